"""Memory sizes as people write them (``4GiB``, ``3.5 GB``): read with pydantic's ByteSize, shown in GiB."""

from __future__ import annotations

from pydantic import ByteSize, TypeAdapter, ValidationError

GIB = 1 << 30


def parse_memory(text: str) -> int:
    """Bytes of a size such as ``4GiB``, ``3.5 GB`` or ``4096MiB`` (GiB = 2^30, GB = 10^9); ValueError naming the
    text when it is not one, or not positive."""
    try:
        value = int(TypeAdapter(ByteSize).validate_python(text))
    except ValidationError as error:
        raise ValueError(f"cannot read {text!r} as a memory size (e.g. 4GiB, 3.5GB, 4096MiB): "
                         f"{error.errors()[0]['msg']}") from None
    if value <= 0:
        raise ValueError(f"a memory size must be positive, got {text!r}")
    return value


def format_memory(size: float) -> str:
    """``size`` bytes as GiB with two decimals."""
    return f"{size / GIB:.2f} GiB"
