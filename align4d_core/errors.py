"""The one error type a user sees for bad input.

Every reader in align4d raises :class:`InputError` for input a user must fix (a missing file, a
truncated mp4, a PLY without the 3DGS properties, a manifest line that is not JSON, ...). The
message names the item, the field and the reason, so that a failed item in a 500-item benchmark can
be found and fixed without a debugger. Readers know the file and the reason; the dataset layer that
calls them knows the item and the field and adds them with :meth:`InputError.within`.
"""

from __future__ import annotations


class InputError(ValueError):
    """Input that cannot be used, with enough context to find and fix it."""

    def __init__(
        self,
        reason: str,
        *,
        uri: str | None = None,
        field: str | None = None,
        item: str | None = None,
    ) -> None:
        self.reason = reason
        self.uri = uri
        self.field = field
        self.item = item
        super().__init__(self._message())

    def _message(self) -> str:
        where = []
        if self.item is not None:
            where.append(f"item {self.item!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        if self.uri is not None:
            where.append(f"({self.uri})")
        return f"{' '.join(where)}: {self.reason}" if where else self.reason

    def within(self, *, item: str | None = None, field: str | None = None) -> InputError:
        """The same error with the item and field filled in where they were not known yet."""
        return InputError(
            self.reason,
            uri=self.uri,
            field=self.field if self.field is not None else field,
            item=self.item if self.item is not None else item,
        )

    def __reduce__(self):  # picklable across processes (Prefect, multiprocessing)
        return (_rebuild, (self.reason, self.uri, self.field, self.item))


def _rebuild(reason: str, uri: str | None, field: str | None, item: str | None) -> InputError:
    return InputError(reason, uri=uri, field=field, item=item)
