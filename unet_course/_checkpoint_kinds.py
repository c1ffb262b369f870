"""What a file that is not a readable checkpoint is, told without running anything in it.

:func:`unet_course.checkpoint.load_checkpoint` reads with ``torch.load(weights_only=True)``,
which refuses any file that would run code and calls every other failure an unpickling or
runtime error. This module reads the file's first bytes and decodes its pickles with
:mod:`pickletools` (which lists the opcodes and never executes one), so the message can say
what the file is:

* torch's zip format (``PK\\x03\\x04``) or its legacy format (before torch 1.6, or
  ``_use_new_zipfile_serialization=False``: a pickled magic number, then the object's pickle):
  ``torch.load(weights_only=True)`` reads both, and what it refuses names other globals;
* a raw ``pickle.dump`` file (a pickle that is not torch's legacy format): not a checkpoint;
* an empty file, or one that is neither.

A file that names globals holds code: unpickling it calls them. The messages never suggest
loading such a file with ``weights_only=False``, since its origin is unknown to the course.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import sys
import zipfile
from pathlib import Path

from torch import nn

__all__ = ["file_kind", "not_a_torch_file", "unreadable"]

ZIP_MAGIC = b"PK\x03\x04"
#: The integer that torch's legacy format pickles first (``torch.serialization.MAGIC_NUMBER``).
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
#: Globals that files of tensors name and ``weights_only`` loading allows; every other one is
#: named in the message. Narrow on purpose: ``builtins.exec`` is a builtin too.
_HARMLESS = re.compile(r"torch\._utils\._rebuild_\w+|torch\._tensor\._rebuild_from_type_v2"
                       r"|torch\.(cuda\.)?\w+Storage|torch\.(Size|device)|collections\.OrderedDict"
                       r"|(builtins|__builtin__)\.(set|frozenset|bytearray|complex)|_codecs\.encode")
_LEGACY = "in torch's legacy format (torch < 1.6, or _use_new_zipfile_serialization=False)"
_OTHERWISE = "otherwise do not load it"
_SHOWN = 4  # globals named in a message; a whole model references dozens


def _globals_of_one_pickle(stream) -> list[str]:
    """``"module.name"`` of each global that the next pickle in ``stream`` names, in order.

    Reads up to the pickle's STOP opcode, leaving ``stream`` after it. Raises ValueError (or
    EOFError) when the pickle is cut short or is not a pickle.
    """
    found, strings, memo, keys, top = [], [], {}, set(), None
    for op, arg, _ in pickletools.genops(stream):
        if op.name in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
            # MEMOIZE numbers every memoised object, strings or not, in order; the memo is what
            # protocol 4+ fetches a repeated module name from (BINGET before STACK_GLOBAL)
            key = len(keys) if arg is None else arg
            keys.add(key)
            if top is not None:
                memo[key] = top
            continue  # memoising leaves the top of the stack as it was
        top = None
        if op.name == "GLOBAL":  # protocols 0-3: "module name"
            found.append(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:  # protocol 4+: two strings
            found.append(f"{strings[-2]}.{strings[-1]}")
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            strings.append(arg)
            top = arg
        elif op.name in ("BINGET", "LONG_BINGET", "GET") and arg in memo:
            strings.append(memo[arg])
            top = memo[arg]
    return found


def _starts_with_legacy_magic(stream) -> bool:
    """True when the first value that the pickle in ``stream`` pushes is torch's magic number.

    Stops at that first value: a raw pickle may be large, and its first value tells already.
    """
    for op, arg, _ in pickletools.genops(stream):
        if op.name not in ("PROTO", "FRAME"):
            return op.name == "LONG1" and arg == LEGACY_MAGIC
    return False


class _Discard:
    """A text sink for :func:`pickletools.dis`, whose listing is not needed, only its checks."""

    def write(self, text: str) -> int:
        return len(text)


def file_kind(path: Path) -> str:
    """``"zip"``, ``"legacy"`` (both torch's), ``"pickle"``, ``"empty"`` or ``"other"``."""
    with open(path, "rb") as f:
        head = f.read(len(ZIP_MAGIC))
        if not head:
            return "empty"
        if head == ZIP_MAGIC:
            return "zip"
        f.seek(0)
        if head[:1] == pickle.PROTO:  # protocols 2 and later open with PROTO: a pickle, maybe cut
            try:
                return "legacy" if _starts_with_legacy_magic(f) else "pickle"
            except (ValueError, EOFError):
                return "pickle"
        try:
            # protocols 0 and 1 have no header: only a whole pickle whose stack adds up is one
            # (dis checks that; many text files begin with bytes that are also opcodes)
            pickletools.dis(f, out=_Discard())
        except (ValueError, EOFError, KeyError, IndexError):
            return "other"
        return "pickle"


def _object_globals(path: Path, kind: str) -> list[str] | None:
    """The globals that the pickle of the stored object names; None when it cannot be decoded."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "data.pkl"]
                return _globals_of_one_pickle(io.BytesIO(archive.read(names[0])))
        with open(path, "rb") as f:
            # legacy: the magic number, the protocol version and sys_info come before the object
            for _ in range(3 if kind == "legacy" else 0):
                _globals_of_one_pickle(f)
            return _globals_of_one_pickle(f)
    except (zipfile.BadZipFile, OSError, ValueError, IndexError, EOFError, UnicodeDecodeError):
        return None


def _is_module_class(qualified: str) -> bool:
    """True for an ``nn.Module`` subclass, judged by name or from modules already imported."""
    if qualified.startswith("torch.nn.modules."):
        return True
    module, _, name = qualified.rpartition(".")
    cls = getattr(sys.modules.get(module), name, None)  # never imports: no code from the file
    return isinstance(cls, type) and issubclass(cls, nn.Module)


def _holds_code(found: list[str]) -> str:
    """The warning every message about a file that names globals carries."""
    names = list(dict.fromkeys(found))
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return (f"the file holds code, and loading it runs that code (it references "
            f"{', '.join(names[:_SHOWN])}{more})")


def not_a_torch_file(path: Path) -> str | None:
    """Why ``path`` is no torch file at all, or None for torch's zip and legacy formats.

    Asked before ``torch.load``, which would call a raw pickle corrupted (after warning about
    its pickle protocol, a second line on the command line's stderr).
    """
    kind = file_kind(path)
    if kind == "empty":
        return f"{path} is empty (0 bytes), not a checkpoint; use an earlier checkpoint or train again"
    if kind == "other":
        with open(path, "rb") as f:
            head = f.read(8)
        return (f"{path} is neither a torch checkpoint nor a pickle (it starts with {head!r}); "
                "give a .pt file written by save_checkpoint or `python -m unet_course train`")
    if kind != "pickle":
        return None
    found = _object_globals(path, kind)
    start = f"{path} was written with pickle.dump, not torch.save: it is not a torch checkpoint"
    save = "unet_course.save_checkpoint(path, model)"
    if found is None:
        return f"{start}, and it is cut short or damaged; save the network with {save}"
    found = [g for g in found if not _HARMLESS.fullmatch(g)]
    if not found:
        return f"{start} and holds no network; save the network with {save}"
    return (f"{start}; {_holds_code(found)}. If you made it yourself, save the network with "
            f"{save} from the session that made it; {_OTHERWISE}")


def unreadable(path: Path, exc: Exception) -> str:
    """The message for a torch file that ``torch.load(weights_only=True)`` refused.

    ``weights_only`` refuses a pickle that names other classes with ``UnpicklingError``; those
    classes, read without running the file, tell a whole pickled model from other objects.
    Anything else is a damaged file.
    """
    kind = file_kind(path)
    legacy = f" {_LEGACY}" if kind == "legacy" else ""
    found = []
    if isinstance(exc, pickle.UnpicklingError):
        found = [g for g in _object_globals(path, kind) or [] if not _HARMLESS.fullmatch(g)]
    modules = [g for g in found if _is_module_class(g)]
    if modules:
        return (f"{path} holds a whole pickled model ({modules[0]}, saved with torch.save(model))"
                f"{legacy}, not a unet_course checkpoint: {_holds_code(found)}. If you made it "
                "yourself with the course, save it again from the session that made it: "
                "unet_course.save_checkpoint(new_path, model), or "
                f"torch.save(model.state_dict(), path) for the weights alone; {_OTHERWISE}")
    if found:
        return (f"{path} holds pickled Python objects ({found[0]} ...){legacy}, not a unet_course "
                f"checkpoint (which holds only tensors and plain values): {_holds_code(found)}. "
                "If you made it yourself, save it again from the session that made it with "
                "tensors in place of those objects (torch.from_numpy(array) for a NumPy array); "
                f"{_OTHERWISE}")
    first = str(exc).splitlines()[0] if str(exc) else "no details"
    what = f"{path}, a torch file{legacy}," if legacy else f"checkpoint {path}"
    return (f"{what} is truncated or corrupted ({type(exc).__name__}: {first}); use an earlier "
            "checkpoint or train again")
