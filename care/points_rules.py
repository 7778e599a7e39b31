"""The time bank's rules (互助养老积分 / 时间银行): amounts, rounding, policy, errors.

Pure domain, like the rest of `care/`: no I/O, no clock (every `now` is passed in), nothing of
ours imported but `care._common` (PointsError is a CareError). `care.points` builds the ledger
on top of these.

Amounts are integer *units* of half a point (`UNITS_PER_POINT == 2`): one hour of verified help
is one point is two units, and the smallest unit the seed's policy allows (积分最小的存储单位是
0.5分) is one unit. Floats never appear: "0.1 + 0.2" must not decide whether an elder can pay for
a bath. Text from people and forms goes through `parse_points`, text to people through
`format_points`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from care._common import CareError

UNITS_PER_POINT = 2
"""Half-points per point: 1 point = 2 units, 0.5 point = 1 unit."""

MINUTES_PER_UNIT = 30
"""Half an hour of help earns one unit (0.5 point)."""

# Far above any real balance (the default balance cap is 3000 units), low enough that a typo
# of extra zeros is refused rather than carried into a report.
MAX_UNITS = 10_000_000

# Plain ASCII decimal text: digits, an optional fraction, an optional sign. No exponents
# ("1e3"), no "nan"/"inf", no thousands separators: what a person types, nothing cleverer.
_AMOUNT = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


# --- errors -------------------------------------------------------------------------------

# code -> (zh-CN, English). A station screen shows the Chinese, an API client reads the code.
ERROR_MESSAGES: dict[str, tuple[str, str]] = {
    "amount_not_number": (
        "积分数额必须是数字，例如“1.5”：{value}",
        'A points amount must be a number such as "1.5": {value}',
    ),
    "amount_too_fine": (
        "积分最小单位是0.5分：{value}",
        "The smallest unit is 0.5 point: {value}",
    ),
    "amount_negative": (
        "积分数额不能为负数：{value}",
        "A points amount cannot be negative: {value}",
    ),
    "amount_zero": ("不能转移0积分", "Moving zero points is not allowed"),
    "amount_too_large": ("积分数额过大：{value}", "The points amount is too large: {value}"),
    "naive_datetime": (
        "时间必须带时区：{field}",
        "Times must carry a time zone: {field}",
    ),
    "missing_field": ("{field}不能为空", "{field} is required"),
    "reason_required": ("必须填写原因", "A reason is required"),
    "operator_invalid": (
        "操作人与会员不符：{detail}",
        "The operator does not match the member: {detail}",
    ),
    "unknown_category": ("未知的服务类别：{category}", "Unknown service category: {category}"),
    "duration_invalid": (
        "结束时间必须晚于开始时间（{field}）",
        "The end must come after the start ({field})",
    ),
    "duration_too_short": (
        "服务{minutes}分钟，按“{rule}”不计积分",
        '{minutes} minutes of help earns nothing under the rule "{rule_en}"',
    ),
    "duration_too_long": (
        "单次服务不能超过{max}分钟（申报{minutes}分钟），请分次申报",
        "One claim cannot exceed {max} minutes ({minutes} claimed); claim each visit separately",
    ),
    "in_future": ("服务时间不能晚于当前时间", "The help cannot end in the future"),
    "claim_too_old": (
        "超过{days}天的服务不能再申报",
        "Help more than {days} days ago can no longer be claimed",
    ),
    "overlapping_claim": (
        "与已申报的{other}时间重叠",
        "The time overlaps claim {other}",
    ),
    "duplicate_claim": ("{ref}已申报过（{other}）", "{ref} has already been claimed ({other})"),
    "alarm_incomplete": (
        "告警时间线缺少{missing}：只有接单并到达现场才计积分",
        "The alert timeline lacks {missing}: only an acknowledged, on-site response earns points",
    ),
    "alarm_not_confirmed": (
        "告警解除时须由他人确认响应人到场",
        "Someone else must confirm at resolution that the responder was on site",
    ),
    "award_needs_staff": ("奖励积分须由工作人员录入", "Station awards are entered by staff"),
    "self_approval": (
        "{person}不能审批与自己相关的积分",
        "{person} cannot approve points that concern themselves",
    ),
    "same_approver": (
        "{person}已{first}，须由另一人{second}",
        "{person} already {first_en}; someone else must {second_en}",
    ),
    "unknown_claim": ("找不到积分申报：{claim}", "No such points claim: {claim}"),
    "unknown_transaction": ("找不到积分记录：{transaction}", "No such transaction: {transaction}"),
    "claim_not_pending": (
        "积分申报{claim}当前状态为{status}，不能核实",
        "Claim {claim} is {status} and cannot be verified",
    ),
    "claim_not_verified": (
        "积分申报{claim}尚未经社区核实（状态：{status}）",
        "Claim {claim} has not been verified by the community (status: {status})",
    ),
    "claim_closed": (
        "积分申报{claim}已办结（状态：{status}）",
        "Claim {claim} is already closed (status: {status})",
    ),
    "yearly_cap_exceeded": (
        "{member}在{year}年已获{earned}分，再加{amount}分将超过年度上限{cap}分",
        "{member} has earned {earned} in {year}; {amount} more would pass the yearly cap of {cap}",
    ),
    "balance_cap_exceeded": (
        "{member}余额{balance}分，再加{amount}分将超过余额上限{cap}分",
        "{member} holds {balance}; {amount} more would pass the balance cap of {cap}",
    ),
    "insufficient_balance": (
        "{account}已入账余额{balance}分，不足{amount}分",
        "{account} has a posted balance of {balance}, less than {amount}",
    ),
    "self_gift": ("不能转赠给自己", "Points cannot be given to oneself"),
    "invalid_recipient": (
        "只能转赠给会员或互助池：{account}",
        "Points can be given only to a member or a pool: {account}",
    ),
    "invalid_payer": (
        "只能用会员或互助池的积分兑换：{account}",
        "Only a member's or a pool's points can be redeemed: {account}",
    ),
    "redeem_for_other": (
        "会员只能为本人兑换服务；请先将积分转赠给{beneficiary}",
        "A member redeems only for themselves; give the points to {beneficiary} first",
    ),
    "redeem_not_eligible": (
        "{member}不满足兑换条件（年满{age}周岁，或属于：{conditions}）",
        "{member} may not redeem yet (age {age} or over, or one of: {conditions})",
    ),
    "order_already_paid": (
        "服务单{order}已用积分支付（{transaction}）",
        "Service order {order} is already paid in points ({transaction})",
    ),
    "order_fully_subsidised": (
        "服务单{order}的个人自付部分为0（政府全额补贴），无需也不能用积分支付",
        "Service order {order} is fully subsidised: the elder pays nothing, so nothing is "
        "paid in points",
    ),
    "order_not_in_hours": (
        "服务单{order}按“{unit}”计价，不按小时：积分按小时兑换（1分=1小时服务），"
        "此单请以现金或服务券支付个人自付部分",
        "Service order {order} is priced per {unit}, not per hour: points buy hours of "
        "service (1 point = 1 hour); pay its elder's share otherwise",
    ),
    "points_not_order_price": (
        "服务单{order}须用{price}分支付（每小时服务1分，支付个人自付部分），不是{points}分",
        "Service order {order} costs {price} points (1 point per hour of service, paying "
        "the elder's own share), not {points}",
    ),
    "pool_needs_approval": (
        "动用互助池积分须由另一名工作人员批准",
        "Spending a pool's points needs the approval of a second staff member",
    ),
    "already_reversed": (
        "{transaction}已被冲正（{reversal}）",
        "{transaction} has already been reversed ({reversal})",
    ),
    "cannot_reverse_reversal": (
        "冲正记录不能再冲正，请重新录入正确的记录",
        "A reversal cannot be reversed; enter the correct movement anew",
    ),
    "idempotency_conflict": (
        "幂等键{key}已用于另一项不同的请求",
        "Idempotency key {key} was already used for a different request",
    ),
}


class PointsError(CareError):
    """A refused points operation: a stable `code`, a Chinese and an English message.

    Raised by every rule; an operation that raises has changed nothing. A `CareError` like every
    refusal of the care room (`code`, `en`, `zh`), so the gateway answers all of them alike;
    `message_zh` / `message_en` and `params` are kept for callers of the points domain.
    """

    def __init__(self, code: str, **params: Any) -> None:
        zh, en = ERROR_MESSAGES[code]
        self.params: dict[str, Any] = params
        # The English template may name `*_en` variants of a parameter (a rule's English
        # name); fall back to the plain one so callers pass only what differs.
        en_params = {
            **params,
            **{f"{k}_en": v for k, v in params.items() if f"{k}_en" not in params},
        }
        self.message_zh = zh.format_map(params)
        self.message_en = en.format_map(en_params)
        super().__init__(code, self.message_en, self.message_zh)
        # str() keeps "code: English" (logs and tests match on the code first).
        self.args = (f"{code}: {self.message_en}",)

    def __str__(self) -> str:
        return f"{self.code}: {self.message_en}"


# --- amounts ------------------------------------------------------------------------------


def parse_points(
    value: str | int | Decimal, *, allow_zero: bool = False, allow_negative: bool = False
) -> int:
    """Points as people write them ("1.5", 2, Decimal("0.5")) -> integer units (3, 4, 1).

    Refuses floats (pass text), anything finer than 0.5, and by default zero and negatives:
    a form field for a gift or a redemption wants a positive amount.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        # A float is refused even when exact (1.5): accepting some floats teaches callers
        # that floats are fine, and 0.1 + 0.2 is not 0.3.
        raise PointsError("amount_not_number", value=repr(value))
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if not _AMOUNT.fullmatch(text):
            raise PointsError("amount_not_number", value=repr(value))
        amount = Decimal(text)
    else:
        amount = value
        if not amount.is_finite():
            raise PointsError("amount_not_number", value=repr(value))
    if abs(amount) > Decimal(MAX_UNITS) / UNITS_PER_POINT:
        raise PointsError("amount_too_large", value=str(value))
    try:
        doubled = amount * UNITS_PER_POINT
        whole = doubled.to_integral_value()
    except InvalidOperation as exc:  # pragma: no cover - guarded by the checks above
        raise PointsError("amount_not_number", value=repr(value)) from exc
    if doubled != whole:
        raise PointsError("amount_too_fine", value=str(value))
    units = int(whole)
    if units < 0 and not allow_negative:
        raise PointsError("amount_negative", value=str(value))
    if units == 0 and not allow_zero:
        raise PointsError("amount_zero")
    return units


def format_points(units: int) -> str:
    """Integer units -> points as people read them: 3 -> "1.5", 2 -> "1", -1 -> "-0.5"."""
    sign = "-" if units < 0 else ""
    whole, half = divmod(abs(units), UNITS_PER_POINT)
    return f"{sign}{whole}.5" if half else f"{sign}{whole}"


def require_units(units: object) -> int:
    """A transfer amount in units: a positive int (not a bool, not a float), else PointsError."""
    if isinstance(units, bool) or not isinstance(units, int):
        raise PointsError("amount_not_number", value=repr(units))
    if units < 0:
        raise PointsError("amount_negative", value=format_points(units))
    if units == 0:
        raise PointsError("amount_zero")
    if units > MAX_UNITS:
        raise PointsError("amount_too_large", value=format_points(units))
    return units


# --- rounding -----------------------------------------------------------------------------


class RoundingMode(StrEnum):
    DOWN = "down"  # 向下取整
    NEAREST = "nearest"  # 四舍五入 (a half step rounds up)
    UP = "up"  # 向上取整


@dataclass(frozen=True, slots=True)
class RoundingRule:
    """How a duration of help becomes points; every earning records the rule it used.

    The duration is rounded to a multiple of `step_minutes` by `mode`; help shorter than
    `minimum_minutes` earns nothing. `step_minutes` must be a multiple of 30 so that the result
    is always a whole number of half-points.
    """

    code: str
    name_zh: str
    name_en: str
    description_zh: str
    description_en: str
    mode: RoundingMode
    step_minutes: int = MINUTES_PER_UNIT
    minimum_minutes: int = MINUTES_PER_UNIT

    def __post_init__(self) -> None:
        if self.step_minutes <= 0 or self.step_minutes % MINUTES_PER_UNIT:
            raise ValueError(f"step_minutes must be a positive multiple of {MINUTES_PER_UNIT}")
        if self.minimum_minutes < 1:
            raise ValueError("minimum_minutes must be at least 1")

    def units_for(self, duration: timedelta) -> int:
        """The units earned for `duration` (0 when it is below the minimum)."""
        # Whole seconds, integer arithmetic: no float ever touches an amount.
        seconds = duration // timedelta(seconds=1)
        if seconds < self.minimum_minutes * 60:
            return 0
        step = self.step_minutes * 60
        if self.mode is RoundingMode.DOWN:
            steps = seconds // step
        elif self.mode is RoundingMode.UP:
            steps = -(-seconds // step)
        else:
            steps = (2 * seconds + step) // (2 * step)
        return steps * (self.step_minutes // MINUTES_PER_UNIT)


FLOOR_HALF_HOUR = RoundingRule(
    code="floor_half_hour",
    name_zh="按半小时向下取整",
    name_en="Round down to the half hour",
    description_zh="不足半小时的部分不计；服务不足30分钟不计积分。例：50分钟计0.5分，90分钟计1.5分。",
    description_en=(
        "Time past the last full half hour is not counted; help shorter than 30 minutes "
        "earns nothing. E.g. 50 minutes earns 0.5 point, 90 minutes 1.5 points."
    ),
    mode=RoundingMode.DOWN,
    minimum_minutes=30,
)

NEAREST_HALF_HOUR = RoundingRule(
    code="nearest_half_hour",
    name_zh="按半小时四舍五入",
    name_en="Round to the nearest half hour",
    description_zh="满15分钟按半小时计，不足15分钟的部分不计；服务不足15分钟不计积分。例：45分钟计1分。",
    description_en=(
        "15 minutes or more of a half hour counts as the half hour, less is dropped; help "
        "shorter than 15 minutes earns nothing. E.g. 45 minutes earns 1 point."
    ),
    mode=RoundingMode.NEAREST,
    minimum_minutes=15,
)

CEIL_HALF_HOUR = RoundingRule(
    code="ceil_half_hour",
    name_zh="不足半小时按半小时计",
    name_en="Round up to the half hour",
    description_zh="每段不足半小时按半小时计，服务满15分钟起计。例：20分钟计0.5分，40分钟计1分。",
    description_en=(
        "Any part of a half hour counts as a half hour, from 15 minutes of help. "
        "E.g. 20 minutes earns 0.5 point, 40 minutes 1 point."
    ),
    mode=RoundingMode.UP,
    minimum_minutes=15,
)

ROUNDING_RULES: dict[str, RoundingRule] = {
    r.code: r for r in (FLOOR_HALF_HOUR, NEAREST_HALF_HOUR, CEIL_HALF_HOUR)
}
"""The built-in rules by code, so a stored entry's rule code can be shown with its description."""


# --- who may redeem -----------------------------------------------------------------------

# The glossary's service categories (助餐 助洁 助浴 助医 助急 巡访关爱 精神慰藉 代办).
SERVICE_CATEGORIES: frozenset[str] = frozenset(
    {"meals", "cleaning", "bathing", "medical", "emergency", "visit", "companionship", "errand"}
)


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """What the care records say about a member, as far as redeeming is concerned.

    The gateway fills it from the elder's record; the ledger never looks people up itself.
    `conditions` uses the glossary's names ("dependent", "lives_alone", "dibao", ...).
    """

    birth_date: date | None = None
    conditions: frozenset[str] = frozenset()


def age_on(birth_date: date, on: date) -> int:
    """Completed years on `on` (a person born on 29 February turns a year older on 1 March)."""
    years = on.year - birth_date.year
    if (on.month, on.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


# --- the policy ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PointsPolicy:
    """The rules a district sets for its time bank. Amounts are in units (half-points).

    `None` for a cap means no cap. The defaults are explained in `care.points`'s docstring.
    """

    rounding: RoundingRule = FLOOR_HALF_HOUR
    yearly_earn_cap: int | None = 500 * UNITS_PER_POINT
    balance_cap: int | None = 1500 * UNITS_PER_POINT
    redeem_min_age: int | None = 60
    redeem_conditions: frozenset[str] = field(default_factory=lambda: frozenset({"dependent"}))
    service_categories: frozenset[str] = SERVICE_CATEGORIES
    max_service_minutes: int = 12 * 60
    claim_window_days: int = 90
    clock_tolerance_minutes: int = 5
    alarm_max_minutes: int = 4 * 60
    alarm_min_units: int = 1
    timezone: str = "Asia/Shanghai"

    def __post_init__(self) -> None:
        for name in ("yearly_earn_cap", "balance_cap"):
            cap = getattr(self, name)
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
                raise ValueError(f"{name} must be a positive number of units or None")
        if self.redeem_min_age is not None and self.redeem_min_age < 0:
            raise ValueError("redeem_min_age must not be negative")
        if self.max_service_minutes < MINUTES_PER_UNIT:
            raise ValueError("max_service_minutes must allow at least half an hour")
        if self.claim_window_days < 1 or self.clock_tolerance_minutes < 0:
            raise ValueError("claim_window_days must be >= 1 and clock_tolerance_minutes >= 0")
        if self.alarm_max_minutes < MINUTES_PER_UNIT or self.alarm_min_units < 0:
            raise ValueError("alarm_max_minutes must be >= 30 and alarm_min_units >= 0")
        ZoneInfo(self.timezone)  # an unknown zone fails here, at configuration time

    @property
    def zone(self) -> ZoneInfo:
        """The local time zone: years (caps) and months (reports) are counted in local time."""
        return ZoneInfo(self.timezone)  # ZoneInfo caches instances by key

    def may_redeem(self, facts: MemberFacts, on: date) -> bool:
        """Age >= redeem_min_age on `on`, or one of the redeem_conditions."""
        if facts.conditions & self.redeem_conditions:
            return True
        if self.redeem_min_age is None:
            return True
        return facts.birth_date is not None and age_on(facts.birth_date, on) >= self.redeem_min_age
