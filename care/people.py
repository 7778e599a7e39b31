"""People who answer alarms and their roles (the care-record module grows the registry).

`Role` and `Language` are used by the gateway and mirrored by value in `alerts.policy.Role`
(which may not import `care`): add a role only together with the alerts side. `Gender` is shared
by elders (`care.elders`) and the ID-card number (`care.idcard`, whose 17th digit gives it).
"""

from __future__ import annotations

from enum import StrEnum

from care._common import Labelled, set_labels


class Role(StrEnum):
    WATCHER = "watcher"  # 守望员
    VOLUNTEER = "volunteer"  # 互助员
    STAFF = "staff"  # 工作人员
    FAMILY = "family"  # 家属


class Language(StrEnum):
    ZH_CN = "zh-CN"
    EN = "en"


class Gender(Labelled):
    MALE = "male"  # 男
    FEMALE = "female"  # 女


set_labels(
    Gender,
    {
        Gender.MALE: ("男", "male", ("m", "男性")),
        Gender.FEMALE: ("女", "female", ("f", "女性")),
    },
)
