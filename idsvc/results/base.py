"""What every result shares: the base model (a field is named once, here in the library, and is the same in the CLI's
``--json``, the API's response and the OpenAPI document), an item's error, a batch that streams its items as each
finishes, and the summary whose exit code the CLI ends with.

Serialising: the API lets FastAPI write the response model as it always has (every declared field, ``null`` where a
field does not apply); the CLI writes exactly the fields a result was given (``Result.document``), so a batch item
that failed is ``{"path", "error"}`` and a script's ``"error" in item`` keeps working.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, create_model

from idsvc.errors import EXIT_INPUT, EXIT_NEGATIVE, IdsvcError


class Result(BaseModel):
    """The base of every result: unknown fields are an error (a result never carries a key its shape lacks)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    def document(self) -> dict[str, Any]:
        """The JSON document the CLI writes: the fields this result was given, by their public names."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class ItemError(Result):
    """Why one item of a batch failed; the rest of the batch goes on."""

    code: str
    message: str
    _error: IdsvcError | None = PrivateAttr(default=None)

    @classmethod
    def of(cls, exc: IdsvcError) -> ItemError:
        item = cls(code=exc.code, message=exc.message)
        item._error = exc
        return item

    def exception(self) -> IdsvcError:
        """The error as raised (with its details), for a skin answering a one-item request."""
        return self._error or IdsvcError(self.code, self.message)


class Item(Result):
    """One item of a batch: its answer, or its ``error`` (each item declares ``error: ItemError | None = None`` after
    the fields that name it, so a document reads name first)."""

    @property
    def failed(self) -> ItemError | None:
        error: ItemError | None = getattr(self, "error", None)
        return error

    @property
    def positive(self) -> bool:
        """Whether the answer is "yes" (identified, the same person); False for an error."""
        return False

    @property
    def label(self) -> str:
        """What names the item in a table: its path."""
        return str(getattr(self, "path", ""))

    def raise_error(self) -> None:
        if self.failed is not None:
            raise self.failed.exception()


ItemT = TypeVar("ItemT", bound=Item)
BaseT = TypeVar("BaseT", bound=Item)


def item_of(name: str, result: type[Result], doc: str, base: type[BaseT], **keys: Any) -> type[BaseT]:
    """A batch item: ``keys`` (what names the item: a path, a pair) plus ``error`` plus every field of ``result``,
    each optional — the fields are ``result``'s, so each is still named once. ``base`` carries the item's methods
    (its constructors, and ``result()`` to read the answer with its types)."""
    fields: dict[str, Any] = {k: (t, ...) for k, t in keys.items()}
    fields["error"] = (ItemError | None, None)
    for field, info in result.model_fields.items():
        fields[field] = (Optional[info.annotation], Field(default=None, alias=info.alias,
                                                          description=info.description))
    model: type[BaseT] = create_model(name, __base__=base, __doc__=doc, **fields)
    return model


class Each(Generic[ItemT]):
    """A batch's items, in order, as each finishes (one photo's error is that item's, the rest go on)."""

    def __init__(self, total: int, items: Iterable[ItemT]) -> None:
        self.total = total
        self._items = iter(items)

    def __iter__(self) -> Iterator[ItemT]:
        return self._items

    def one(self) -> ItemT:
        """The only item of a one-item batch; its error raised as it was raised."""
        item = next(self._items)
        item.raise_error()
        return item


class BatchSummary(Result):
    items: int
    positive: int
    negative: int
    errors: int
    exit_code: int = Field(description="what the CLI would exit with: 0 all matched, 1 some unknown, 2 some failed")

    @classmethod
    def of(cls, items: Sequence[Item], positive: Callable[[Item], bool] | None = None) -> BatchSummary:
        """Counts and the exit code: 2 when any item had an input error, else 1 when any answer was negative
        (unknown face, not the same person), else 0."""
        is_positive = positive or (lambda item: item.positive)
        errors = sum(1 for i in items if i.failed is not None)
        negative = sum(1 for i in items if i.failed is None and not is_positive(i))
        code = EXIT_INPUT if errors else EXIT_NEGATIVE if negative else 0
        return cls(items=len(items), positive=len(items) - errors - negative, negative=negative, errors=errors,
                   exit_code=code)
