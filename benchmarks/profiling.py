"""Where the engine's time goes, from a pyinstrument session: self time grouped by library
(botocore, aiohttp, ...) and by engine module, with waiting (awaits, the idle event loop) kept
apart, so the summary reads as "where the CPU goes" rather than "what took long"."""

from __future__ import annotations

from collections import Counter
from typing import Any

WAITING = "waiting (await / idle event loop)"
_IDLE_FILES = ("selectors.py",)
_BY_MODULE = frozenset({"botocore", "aiobotocore", "aiohttp"})


def group_of(file_path: str | None, function: str | None) -> str:
    path = file_path or ""
    if "site-packages/" in path:
        parts = path.split("site-packages/", 1)[1].removesuffix(".py").split("/")
        # The SDK layers are where the time is: name their modules (botocore.serialize, ...).
        if parts[0] in _BY_MODULE and len(parts) > 1:
            return f"{parts[0]}.{parts[1]}"
        return parts[0]
    if "/syncengine/" in path:
        module = path.split("/syncengine/", 1)[1].removesuffix(".py").replace("/", ".")
        return f"syncengine.{module}"
    if "/benchmarks/" in path:
        return "benchmarks (harness)"
    if path.endswith(_IDLE_FILES) or (function or "").startswith("select"):
        return WAITING
    if path.startswith("<"):
        return f"builtin {function or path}"
    name = path.rsplit("/", 1)[-1].removesuffix(".py") if path else (function or "unknown")
    return f"stdlib {name}"


def _is_builtin(frame: Any) -> bool:
    return (frame.file_path or "").startswith("<")


def self_time_by_group(root: Any) -> Counter[str]:
    """Seconds of sampled self time per group in a pyinstrument frame tree. Time in a builtin
    (``dict.get``, ``json`` decoding in C, ...) counts for the Python code that called it; time in
    ``epoll``/``select`` is the idle event loop."""
    from pyinstrument.frame import AWAIT_FRAME_IDENTIFIER, SYNTHETIC_LEAF_IDENTIFIERS

    totals: Counter[str] = Counter()

    def charge(frame: Any, owner: Any, seconds: float) -> None:
        function = (frame.function or "") if frame is not None else ""
        if "poll" in function or function.startswith("select"):
            totals[WAITING] += seconds
        else:
            target = owner if owner is not None else frame
            totals[group_of(target.file_path, target.function)] += seconds

    def visit(frame: Any, owner: Any) -> None:
        identifier = getattr(frame, "identifier", "")
        if identifier == AWAIT_FRAME_IDENTIFIER:
            totals[WAITING] += frame.time
            return
        if identifier in SYNTHETIC_LEAF_IDENTIFIERS:
            charge(None, owner, frame.time)
            return
        builtin = _is_builtin(frame)
        if not frame.children:
            charge(frame, owner if builtin else frame, frame.time)
            return
        for child in frame.children:
            visit(child, owner if builtin else frame)

    if root is not None:
        visit(root, None)
    return totals


def summarise(root: Any, top: int = 15) -> dict[str, Any]:
    totals = self_time_by_group(root)
    busy = sum(seconds for group, seconds in totals.items() if group != WAITING)
    groups = [
        {"group": group, "seconds": round(seconds, 2), "share_of_busy": round(seconds / busy, 3) if busy else 0.0}
        for group, seconds in totals.most_common()
        if group != WAITING
    ][:top]
    return {"busy_s": round(busy, 2), "waiting_s": round(totals.get(WAITING, 0.0), 2), "groups": groups}
