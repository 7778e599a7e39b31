"""Chinese for the HTTP errors a person meets, beside the English (zh-CN first on every screen).

The API's bilingual shapes, which the pages read:
- a string `detail` (English) gets `detail_zh` and a `code` beside it, as the session's
  refusals have always had (`{"detail", "detail_zh", "code"}`);
- a 422's `detail` list: every item gets `en` and `zh` beside pydantic's `type`, `loc`, `msg`;
- `detail: {"code", "en", "zh"}` (points, services) is bilingual already and left as it is.

A route that knows a better Chinese text raises `Bilingual` (or a check puts `en`/`zh` in a
validation error's ctx); everything else gets Chinese from its status or pydantic error type
here, so a route added later is never English only.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import HTTPException

# By status: a string `detail` that no route translated. Also the `code` beside it.
_STATUS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "请求有误"),
    401: ("unauthorized", "未登录或登录已失效，请重新登录"),
    403: ("forbidden", "没有权限执行此操作"),
    404: ("not_found", "找不到该资源"),
    405: ("method_not_allowed", "不支持该请求方法"),
    406: ("not_acceptable", "无法提供所要求的格式"),
    409: ("conflict", "与现有记录冲突"),
    410: ("gone", "该资源已不存在"),
    413: ("too_large", "提交的内容过大"),
    415: ("unsupported_media_type", "不支持该内容类型"),
    422: ("invalid", "填写的内容有误"),
    429: ("too_many_requests", "操作太频繁，请稍后再试"),
    503: ("unavailable", "服务暂时不可用，请稍后再试"),
}

# The things a 404 names ("no elder 'e1'"), as the Glossary words them.
WHAT_ZH: dict[str, str] = {
    "elder": "老人",
    "device": "设备",
    "alert": "告警",
    "person": "人员",
    "responder": "人员",
    "profile of person": "人员资料",
    "pairing": "结对",
    "shift": "值班",
    "mute": "静音设置",
    "away mark for elder": "老人的外出标记",
    "water thresholds for elder": "老人的用水阈值",
    "ID number of elder": "老人的身份证号",
    "family link": "家属关联",
    "user": "用户",
    "order": "工单",
    "transaction": "交易",
}

# The callers' roles (gateway/auth.py Role), as a 403 names them.
ROLE_ZH: dict[str, str] = {
    "admin": "管理员",
    "staff": "工作人员",
    "family": "家属",
    "watcher": "守望员",
    "volunteer": "志愿者",
    "service_worker": "服务人员",
}

# An alert's states (alerts/model.py State), as a 409 names them.
STATE_ZH: dict[str, str] = {
    "open": "待接单",
    "acknowledged": "已接单",
    "on_site": "已到场",
    "resolved": "已处理",
    "cancelled": "已取消",
}

# Pydantic's own error types; `{name}` takes the error's ctx. Our checks carry their own Chinese
# in ctx (`en`, `zh`); the custom types below are the English-only ones this gateway raises.
_PYDANTIC_ZH: dict[str, str] = {
    "missing": "必填项未填写",
    "missing_argument": "必填项未填写",
    "extra_forbidden": "不接受此字段",
    "json_invalid": "提交的内容不是有效的 JSON",
    "json_type": "提交的内容须为 JSON",
    "model_type": "格式不对，须为对象",
    "model_attributes_type": "格式不对，须为对象",
    "dict_type": "格式不对，须为对象",
    "list_type": "须为列表",
    "tuple_type": "须为列表",
    "set_type": "须为列表",
    "string_type": "须为文字",
    "string_unicode": "须为有效的文字",
    "string_too_short": "太短（至少{min_length}个字）",
    "string_too_long": "太长（最多{max_length}个字）",
    "string_pattern_mismatch": "格式不对",
    "string_not_ascii": "只能含英文字母、数字和符号",
    "too_short": "项数太少（至少{min_length}项）",
    "too_long": "项数太多（最多{max_length}项）",
    "bytes_too_short": "太短（至少{min_length}字节）",
    "bytes_too_long": "太长（最多{max_length}字节）",
    "int_type": "须为整数",
    "int_parsing": "须为整数",
    "int_from_float": "须为整数",
    "int_parsing_size": "数值超出范围",
    "float_type": "须为数字",
    "float_parsing": "须为数字",
    "decimal_type": "须为数字",
    "decimal_parsing": "须为数字",
    "decimal_max_digits": "数字位数过多（最多{max_digits}位）",
    "decimal_max_places": "小数位数过多（最多{decimal_places}位）",
    "finite_number": "须为有限的数字",
    "bool_type": "须为是或否（true/false）",
    "bool_parsing": "须为是或否（true/false）",
    "greater_than": "须大于{gt}",
    "greater_than_equal": "不能小于{ge}",
    "less_than": "须小于{lt}",
    "less_than_equal": "不能大于{le}",
    "multiple_of": "须为{multiple_of}的倍数",
    "enum": "不是可选值之一（可选：{expected}）",
    "literal_error": "不是可选值之一（可选：{expected}）",
    "none_required": "此处须为空",
    "date_type": "须为日期",
    "date_parsing": "日期格式不对（如 2026-01-31）",
    "date_from_datetime_parsing": "日期格式不对（如 2026-01-31）",
    "date_from_datetime_inexact": "须为日期，不带时间",
    "time_type": "须为时刻",
    "time_parsing": "时刻格式不对（如 08:30）",
    "datetime_type": "须为时间",
    "datetime_parsing": "时间格式不对",
    "datetime_from_date_parsing": "时间格式不对",
    "datetime_object_invalid": "时间无效",
    "timezone_aware": "时间须带时区",
    "timezone_naive": "时间不能带时区",
    "time_delta_type": "须为时长",
    "time_delta_parsing": "时长格式不对",
    "uuid_type": "须为 UUID",
    "uuid_parsing": "UUID 格式不对",
    "url_type": "须为网址",
    "url_parsing": "网址格式不对",
    "url_syntax_violation": "网址格式不对",
    "url_too_long": "网址太长",
    "url_scheme": "网址的协议不对",
    "union_tag_invalid": "类型不是可选值之一",
    "union_tag_not_found": "缺少类型字段",
    # the gateway's own checks that carry no Chinese of their own (gateway/api*.py)
    "control_characters": "含有不允许的控制字符",
    "id_format": "编号格式不对（只能含英文字母、数字和 _ . -，最多64个字符）",
    "date_format": "日期格式须为 年-月-日（YYYY-MM-DD）",
    "date_range": "日期不在合理范围内",
    "datetime_format": "时间须为带时区的 RFC 3339 格式（如 2026-01-31T08:30:00+08:00）",
}
_FALLBACK_ZH = "填写的内容不符合要求"
_PLACEHOLDER = re.compile(r"（[^（）]*\{[^}]*\}[^（）]*）|\{[^}]*\}")


class Bilingual(HTTPException):
    """An HTTP refusal whose English `detail` has its Chinese: answered with `detail_zh`."""

    def __init__(
        self, status_code: int, en: str, zh: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code, detail=en, headers=headers)
        self.zh = zh


def status_zh(status_code: int) -> tuple[str, str]:
    """The `code` and a Chinese text for an error of this status that no route worded."""
    if status_code in _STATUS:
        return _STATUS[status_code]
    if status_code >= 500:
        return f"http_{status_code}", "服务器出错，请稍后再试"
    return f"http_{status_code}", "请求未被接受"


def not_found_zh(what: str, shown: str) -> str:
    """The Chinese of a 404 naming `what` ("没有该老人：'e1'"); `shown` as the English has it."""
    return f"没有该{WHAT_ZH[what]}：{shown}" if what in WHAT_ZH else f"找不到：{shown}"


def validation_zh(err: dict[str, Any]) -> str:
    """Chinese for one pydantic error (ours: its ctx["zh"]; pydantic's: by its type)."""
    ctx = err.get("ctx") or {}
    if isinstance(ctx.get("zh"), str) and ctx["zh"]:
        return str(ctx["zh"])
    kind = str(err.get("type", ""))
    if kind in ("value_error", "assertion_error"):
        # The English reason stays: a check's words are more use than a bare "wrong".
        reason = str(ctx.get("error") or err.get("msg") or "").strip()
        return f"{_FALLBACK_ZH}：{reason}" if reason else _FALLBACK_ZH
    template = _PYDANTIC_ZH.get(kind)
    if template is None:
        return _FALLBACK_ZH
    try:
        values = {k: str(v).replace(" or ", " 或 ") for k, v in ctx.items()}
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        # A ctx without the number named: the words without it.
        return _PLACEHOLDER.sub("", template) or _FALLBACK_ZH


def validation_en(err: dict[str, Any]) -> str:
    """English for one pydantic error: ours carry it in ctx, pydantic's is its `msg`."""
    ctx = err.get("ctx") or {}
    if isinstance(ctx.get("en"), str) and ctx["en"]:
        return str(ctx["en"])
    return str(err.get("msg", ""))


__all__ = [
    "ROLE_ZH",
    "STATE_ZH",
    "WHAT_ZH",
    "Bilingual",
    "not_found_zh",
    "status_zh",
    "validation_en",
    "validation_zh",
]
