"""Losses of training and distillation. All take float tensors; reductions are means."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def feature_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between pool5 features, the original method: ``student``, ``teacher`` (N, D), mean over N·D."""
    if student.shape != teacher.shape:
        raise ValueError(
            f"feature_loss: student features {tuple(student.shape)} and teacher features "
            f"{tuple(teacher.shape)} differ (same width, frames and size are needed)"
        )
    return F.mse_loss(student.float(), teacher.float())


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Hinton et al. 2015: ``alpha·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − alpha)·CE(z_s, y)``.

    Logits (N, K), labels (N,) int64. The T² keeps the soft term's gradient scale independent of T.
    Returns the total and its parts ``{"kl": …, "ce": …}`` (unweighted).
    """
    t = float(temperature)
    s = student_logits.float()
    log_p_s = F.log_softmax(s / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")
    parts = {"kl": kl}
    total = alpha * t * t * kl
    if alpha < 1.0:
        if labels is None:
            raise ValueError("kd_loss: alpha < 1 needs labels for its cross-entropy part")
        ce = F.cross_entropy(s, labels)
        parts["ce"] = ce
        total = total + (1.0 - alpha) * ce
    return total, parts


def align_hint(teacher_act: torch.Tensor, student_act: torch.Tensor) -> torch.Tensor:
    """Bring a teacher stage activation into the student's space at the same depth (no regressor).

    ``teacher_act`` is (N, C, T, H, W). A 3D student stage (SP) has the same shape; a 2D MC stage is
    (N, C·T', H, W): the teacher is folded (channel ``c·T + t``), after a temporal max pool by two when the
    student's "b" conv has already taken over the temporal half of the next pool (T' = T/2).
    """
    if teacher_act.shape == student_act.shape:
        return teacher_act
    if teacher_act.dim() == 5 and student_act.dim() == 4:
        n, c, t, h, w = teacher_act.shape
        if student_act.shape[2:] == (h, w):
            if student_act.shape[1] == c * t:
                return teacher_act.reshape(n, c * t, h, w)
            if t % 2 == 0 and student_act.shape[1] == c * (t // 2):
                pooled = F.max_pool3d(teacher_act, kernel_size=(2, 1, 1))
                return pooled.reshape(n, c * (t // 2), h, w)
    raise ValueError(
        f"hint: teacher activation {tuple(teacher_act.shape)} cannot be folded into the "
        f"student's {tuple(student_act.shape)}"
    )


def hint_loss(
    teacher_stages: dict[str, torch.Tensor],
    student_stages: dict[str, torch.Tensor],
    pairs: list[tuple[str, str]],
) -> torch.Tensor:
    """Mean over ``pairs`` of the MSE between each student stage and the aligned teacher stage."""
    if not pairs:
        raise ValueError("hint_loss: no (teacher, student) stage pairs")
    total = None
    for t_name, s_name in pairs:
        s = student_stages[s_name].float()
        t = align_hint(teacher_stages[t_name], student_stages[s_name]).float()
        term = F.mse_loss(s, t)
        total = term if total is None else total + term
    return total / len(pairs)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of rows of ``logits`` (N, K) whose label is among the top-k, for each k (k capped at K)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # (N, kmax)
    hit = top.eq(labels.view(-1, 1))
    return [int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]
