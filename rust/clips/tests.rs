use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use super::*;
use crate::error::{try_zeroed, ClipError};
use crate::threads::MAX_THREADS;
use crate::transform::{check_target, Resize, RgbImage, MAX_SIDE};
use crate::video::tests::make_video;

#[test]
fn allocation_failures_are_errors_not_aborts() {
    // Beyond isize: Layout::array refuses; near the address space: the allocator refuses.
    for n in [usize::MAX / 2, 1 << 60] {
        // black_box: else LLVM may elide an allocation that is never used, and call it a success.
        let r = std::hint::black_box(try_zeroed::<f32>(n, || "test buffer".into()));
        assert!(
            matches!(&r, Err(ClipError::OutOfMemory { bytes, .. }) if *bytes == n as u128 * 4),
            "{n}"
        );
    }
    assert_eq!(try_zeroed::<u8>(5, String::new).unwrap(), vec![0u8; 5]);
    assert!(matches!(
        std::hint::black_box(RgbImage::try_new(1 << 40, 1 << 40)),
        Err(ClipError::OutOfMemory { .. })
    ));
}

#[test]
fn sizes_and_threads_beyond_the_limits_name_the_argument() {
    let clips = vec![ClipRequest {
        path: PathBuf::from("/nope.avi"),
        frames: vec![0],
    }];
    let cancel = AtomicBool::new(false);
    let arg_of =
        |spec: &Spec, threads: usize| match read_clips(&clips, spec, threads, true, &cancel) {
            Err(ClipError::InvalidArgument { arg, .. }) => arg,
            other => panic!("{:?}", other.map(|b| b.shape)),
        };
    for resize in [
        Resize::Fixed(MAX_SIDE + 1, 8),
        Resize::Fixed(16384, 16384), // each side allowed, the area beyond FFmpeg's limit
        Resize::ShortSide(MAX_SIDE + 1),
    ] {
        let spec = Spec {
            resize,
            ..Spec::default()
        };
        assert_eq!(arg_of(&spec, 1), "size", "{resize:?}");
    }
    let spec = Spec {
        crop: Some((8, MAX_SIDE + 1)),
        ..Spec::default()
    };
    assert_eq!(arg_of(&spec, 1), "crop");
    assert_eq!(arg_of(&Spec::default(), MAX_THREADS + 1), "threads");
    assert!(check_target(16000, 16000, "size").is_ok());
}

#[test]
fn a_batch_beyond_memory_is_an_error_naming_its_shape() {
    let path = make_video(
        "clips_oom.avi",
        &["-frames:v", "3", "-c:v", "mpeg4", "-s", "64x48"],
    );
    let clips = vec![
        ClipRequest {
            path,
            frames: vec![0; 100_000],
        };
        200
    ];
    let spec = Spec {
        resize: Resize::Fixed(16000, 16000),
        crop: None,
        dtype: DType::F32,
        ..Spec::default()
    };
    let cancel = AtomicBool::new(false);
    match read_clips(&clips, &spec, 2, false, &cancel) {
        Err(e @ ClipError::OutOfMemory { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("[200, 3, 100000, 16000, 16000]"), "{msg}");
            assert!(
                msg.contains(&(200u128 * 3 * 100_000 * 16000 * 16000 * 4).to_string()),
                "{msg}"
            );
        }
        other => panic!("{:?}", other.map(|b| b.shape)),
    }
}

#[test]
fn reads_a_batch_and_reports_bad_clips() {
    let path = make_video(
        "clips_mpeg4.avi",
        &["-frames:v", "50", "-c:v", "mpeg4", "-g", "12", "-q:v", "4"],
    );
    let cancel = AtomicBool::new(false);
    let clips = vec![
        ClipRequest {
            path: path.clone(),
            frames: vec![30, 31, 32, 33],
        },
        ClipRequest {
            path: PathBuf::from("/nope.avi"),
            frames: vec![0, 1, 2, 3],
        },
        ClipRequest {
            path: path.clone(),
            frames: vec![3, 2, 1, 1],
        },
        ClipRequest {
            path: path.clone(),
            frames: vec![0, 1, 2, 99],
        },
    ];
    let spec = Spec {
        dtype: DType::F32,
        ..Spec::default()
    };
    let b = read_clips(&clips, &spec, 2, true, &cancel).unwrap();
    assert_eq!(b.shape, vec![2, 3, 4, 112, 112]);
    assert_eq!(b.ok, vec![0, 2]);
    assert_eq!(b.failed.iter().map(|f| f.0).collect::<Vec<_>>(), vec![1, 3]);
    assert!(matches!(b.failed[0].1, ClipError::NotFound { .. }));
    assert!(matches!(b.failed[1].1, ClipError::InvalidArgument { .. }));
    let Data::F32(v) = b.data else { panic!() };
    assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
    // Frames 1 and 1 of the second clip are the same frame.
    let plane = 112 * 112;
    let frame = |n: usize, c: usize, t: usize| {
        &v[((n * 3 + c) * 4 + t) * plane..((n * 3 + c) * 4 + t + 1) * plane]
    };
    assert_eq!(frame(1, 0, 2), frame(1, 0, 3));
    assert_ne!(frame(1, 0, 0), frame(1, 0, 1));
    // Without skip the first failure is the error.
    assert!(matches!(
        read_clips(&clips, &spec, 2, false, &cancel),
        Err(ClipError::NotFound { .. })
    ));
}

#[test]
fn bgr_is_rgb_with_the_channel_axis_reversed() {
    use crate::transform::{Channels, Layout};
    let path = make_video(
        "clips_bgr.avi",
        &["-frames:v", "8", "-c:v", "mpeg4", "-q:v", "4"],
    );
    let clips = vec![ClipRequest {
        path,
        frames: vec![1, 5],
    }];
    let cancel = AtomicBool::new(false);
    let (mean, std) = ([0.4, 0.3, 0.2], [0.2, 0.25, 0.5]);
    let read = |channels, mean: [f32; 3], std: [f32; 3]| {
        let spec = Spec {
            layout: Layout::Ncthw,
            dtype: DType::F32,
            channels,
            mean,
            std,
            ..Spec::default()
        };
        let b = read_clips(&clips, &spec, 2, false, &cancel).unwrap();
        let Data::F32(v) = b.data else { panic!() };
        v
    };
    let rgb = read(Channels::Rgb, mean, std);
    let rev = |a: [f32; 3]| [a[2], a[1], a[0]];
    let bgr = read(Channels::Bgr, rev(mean), rev(std));
    // (N, C, T, H, W): channel c of the one clip is the c-th third of the buffer.
    let third = rgb.len() / 3;
    for c in 0..3 {
        let out = &bgr[c * third..(c + 1) * third];
        assert!(out == &rgb[(2 - c) * third..(3 - c) * third], "channel {c}");
    }
}
