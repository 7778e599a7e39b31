"""People who answer alarms and their roles (the care-record module grows the registry)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    WATCHER = "watcher"  # 守望员
    VOLUNTEER = "volunteer"  # 互助员
    STAFF = "staff"  # 工作人员
    FAMILY = "family"  # 家属


class Language(StrEnum):
    ZH_CN = "zh-CN"
    EN = "en"
