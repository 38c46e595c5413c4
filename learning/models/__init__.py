from __future__ import annotations

from learning.models.cycle import CycleTransition, LearningCycle
from learning.models.policy import LearningPolicy

__all__ = ["CycleTransition", "LearningCycle", "LearningPolicy"]
