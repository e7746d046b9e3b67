"""Memory ids and keys (SPEC 3): what an id and a message may hold, and the
`conversationId:blockId` key."""

from __future__ import annotations

from ...storage.memory_tables import ID_LENGTH as ID_LENGTH  # (exported: HTTP documents it)
from ..errors import BadRequest, TooLarge
from ..text import has_control

_CONTROL_OR_SURROGATE = frozenset(("Cc", "Cs"))

ROLES = frozenset({"user", "assistant", "system"})
DEFAULT_BLOCK = "default"
IDEMPOTENCY_KEY_LENGTH = 255


def _enc(part: str) -> str:
    # '%' first, so that the '%' of an encoded ':' is never encoded again.
    return part.replace("%", "%25").replace(":", "%3A")


def memory_key(conversation_id: str, block_id: str) -> str:
    """`conversationId:blockId` with '%' and ':' percent-encoded in each part.

    Neither encoded part contains ':', so the one ':' splits the key back into its parts, and
    percent-decoding each part gives back the ids: distinct pairs never share a key.
    """
    return f"{_enc(conversation_id)}:{_enc(block_id)}"


def check_id(value: str, what: str, max_chars: int = ID_LENGTH) -> str:
    """Ids and names: 1..max_chars characters of any Unicode but control characters."""
    if not value:
        raise BadRequest(f"{what} must not be empty", code="invalid_id")
    if len(value) > max_chars:
        raise BadRequest(
            f"{what} is {len(value)} characters; the maximum is {max_chars}", code="invalid_id"
        )
    if has_control(value, _CONTROL_OR_SURROGATE):
        raise BadRequest(
            f"{what} must not contain control characters or lone surrogates", code="invalid_id"
        )
    return value


def check_message(
    role: str, content: str, max_bytes: int, where: str = ""
) -> tuple[str, str, bytes, int]:
    """(role, content, content as UTF-8, bytes charged) of a message, or a 4xx; `where` names it
    in a batch ("messages[3].")."""
    if role not in ROLES:
        raise BadRequest(
            f"{where}role must be user, assistant or system, not {role!r}", code="invalid_role"
        )
    try:
        raw = content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(f"{where}content is not valid Unicode", code="invalid_content") from exc
    if len(raw) > max_bytes:
        raise TooLarge(
            f"{where}content is {len(raw)} bytes; the maximum is {max_bytes}",
            code="content_too_large",
        )
    return role, content, raw, len(role) + len(raw)


def check_idempotency_key(value: str) -> str:
    """The one rule for an idempotency key, whether it came as the `Idempotency-Key` header of
    an add or as the memory_add tool's `idempotencyKey`: 1-255 ASCII characters, none a control
    character. (A header is bytes: anything outside ASCII would reach us as Latin-1 guesswork,
    so a key given as JSON text is held to the same, lest one key work one way only.)"""
    if not value.isascii():
        raise BadRequest(
            f"Idempotency-Key must be ASCII (1-{IDEMPOTENCY_KEY_LENGTH} characters)",
            code="invalid_id",
        )
    return check_id(value, "Idempotency-Key", IDEMPOTENCY_KEY_LENGTH)


def conversation_of(conversation_id: str | None, legacy_id: str | None) -> str | None:
    """`conversationId`, or its legacy spelling `id`; both given must agree."""
    if conversation_id is not None and legacy_id is not None and conversation_id != legacy_id:
        raise BadRequest(
            "conversationId and id (its legacy alias) are both given and differ; send one",
            code="conflicting_ids",
        )
    value = conversation_id if conversation_id is not None else legacy_id
    return None if value is None else check_id(value, "conversationId")


def memory_pair(
    conversation_id: str | None, legacy_id: str | None, block_id: str | None
) -> tuple[str, str]:
    """(conversationId, blockId) of one memory: the conversation is required, the block
    defaults to `default`."""
    conv = conversation_of(conversation_id, legacy_id)
    if conv is None:
        raise BadRequest(
            "conversationId is required (or its legacy alias id)",
            code="missing_conversation_id",
        )
    return conv, DEFAULT_BLOCK if block_id is None else check_id(block_id, "blockId")
