"""A constant-velocity Kalman filter over boxes, one per track, as ByteTrack and SORT use.

State x = (cx, cy, w, h, vcx, vcy, vw, vh) in pixels and pixels per frame. The noise scales with the box height,
so a small far object and a large near one are tracked with the same relative confidence.
"""
from __future__ import annotations

import numpy as np

_POSITION_NOISE = 1 / 20
_VELOCITY_NOISE = 1 / 160

_TRANSITION = np.eye(8)
_TRANSITION[:4, 4:] = np.eye(4)  # position += velocity, once per frame
_OBSERVATION = np.eye(4, 8)


def xyxy_to_cxcywh(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = np.asarray(box, np.float64)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])


def cxcywh_to_xyxy(state: np.ndarray) -> np.ndarray:
    cx, cy, w, h = state[:4]
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


class BoxMotion:
    """The motion of one box: `predict()` once per frame, `update(box)` when the box is seen again."""

    def __init__(self, box_xyxy: np.ndarray) -> None:
        measured = xyxy_to_cxcywh(box_xyxy)
        self.state = np.concatenate([measured, np.zeros(4)])
        scale = max(measured[3], 1.0)
        spread = np.array([2 * _POSITION_NOISE, 2 * _POSITION_NOISE, 2 * _POSITION_NOISE, 2 * _POSITION_NOISE,
                           10 * _VELOCITY_NOISE, 10 * _VELOCITY_NOISE, 10 * _VELOCITY_NOISE, 10 * _VELOCITY_NOISE])
        self.covariance = np.diag((spread * scale) ** 2)

    @property
    def box(self) -> np.ndarray:
        """The current estimate as x1, y1, x2, y2."""
        return cxcywh_to_xyxy(self.state)

    def predict(self) -> np.ndarray:
        """Advance one frame; → the predicted box x1, y1, x2, y2."""
        scale = max(self.state[3], 1.0)
        noise = np.r_[np.full(4, _POSITION_NOISE), np.full(4, _VELOCITY_NOISE)] * scale
        self.state = _TRANSITION @ self.state
        self.state[2:4] = np.maximum(self.state[2:4], 1.0)  # a shrinking box never turns inside out
        self.covariance = _TRANSITION @ self.covariance @ _TRANSITION.T + np.diag(noise**2)
        return self.box

    def update(self, box_xyxy: np.ndarray) -> None:
        """Correct the estimate with a measured box."""
        measured = xyxy_to_cxcywh(box_xyxy)
        noise = np.full(4, _POSITION_NOISE * max(self.state[3], 1.0))
        innovation_cov = _OBSERVATION @ self.covariance @ _OBSERVATION.T + np.diag(noise**2)
        gain = np.linalg.solve(innovation_cov, _OBSERVATION @ self.covariance).T
        self.state = self.state + gain @ (measured - _OBSERVATION @ self.state)
        self.covariance = (np.eye(8) - gain @ _OBSERVATION) @ self.covariance
