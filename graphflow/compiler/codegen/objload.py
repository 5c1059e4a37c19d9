"""Loading object code without LLVM: a small loader of x86-64 ELF relocatable objects.

Why: a process whose kernels are all in the disk cache needs no LLVM at all, but loading an
object file through llvmlite's MCJIT means importing llvmlite.binding and mapping LLVM's
shared library first, about 20 ms: a fifth of a warm-cache W6 compile. The objects LLVM
emits for our kernels are simple (code, constant pools, maybe writable data; absolute and
PC-relative relocations; calls into the C library), so this module does for them what
MCJIT's RuntimeDyld does: copy the allocated sections into fresh pages, resolve external
symbols in the process (dlsym), apply the relocations, and make code read+execute, constants
read-only, data read+write.

Anything it does not know raises `Unsupported`, and the caller loads through llvmlite instead:
another architecture, byte order or object format, an unknown relocation or section kind
(TLS, static constructors, common symbols), a symbol that does not resolve, a value out of a
32-bit relocation's range, or an OS refusing executable mappings.
"""
from __future__ import annotations

import ctypes
import os
import struct
import sys
import weakref

import numpy as np

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")     # name, type, flags, addr, offset, size, link, info, align, entsize
_SYM = struct.Struct("<IBBHQQ")          # name, info, other, shndx, value, size

ET_REL, EM_X86_64 = 1, 62
SHT_SYMTAB, SHT_RELA, SHT_NOBITS, SHT_REL = 2, 4, 8, 9
SHT_INIT_ARRAY, SHT_FINI_ARRAY, SHT_PREINIT_ARRAY = 14, 15, 16
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR, SHF_TLS = 0x1, 0x2, 0x4, 0x400
SHN_UNDEF, SHN_ABS = 0, 0xFFF1
STB_LOCAL, STB_WEAK = 0, 2
STT_SECTION = 3

R_NONE, R_64, R_PC32, R_PLT32, R_GOTPCREL, R_32, R_32S, R_PC64, R_GOTPCRELX, R_REX_GOTPCRELX = \
    0, 1, 2, 4, 9, 10, 11, 24, 41, 42
_GOT_RELOCS = (R_GOTPCREL, R_GOTPCRELX, R_REX_GOTPCRELX)
_KNOWN_RELOCS = (R_NONE, R_64, R_PC32, R_PLT32, R_32, R_32S, R_PC64) + _GOT_RELOCS

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20
PAGE = 4096
_STUB = b"\xff\x25\x00\x00\x00\x00"      # jmp *0(%rip): to the 8-byte address right after it
_STUB_SIZE = 16


class Unsupported(Exception):
    """This object (or this host) is not one the loader handles: load it through LLVM."""


def host_supported() -> bool:
    """Linux on x86-64 with 64-bit pointers: the only host whose objects this loader reads."""
    return (sys.platform.startswith("linux") and sys.byteorder == "little"
            and os.uname().machine in ("x86_64", "amd64") and ctypes.sizeof(ctypes.c_void_p) == 8)


class _Libc:
    """mmap, mprotect, munmap and dlsym of the running process, through ctypes."""

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        self.process = libc
        self.mmap = libc.mmap
        self.mmap.restype = ctypes.c_void_p
        self.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        self.mprotect = libc.mprotect
        self.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.munmap = libc.munmap
        self.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

    def symbol(self, name: str) -> int | None:
        try:
            return ctypes.cast(self.process[name], ctypes.c_void_p).value
        except AttributeError:
            return None


_libc: _Libc | None = None


def _c() -> _Libc:
    global _libc
    if _libc is None:
        _libc = _Libc()
    return _libc


class LoadedObject:
    """The code and data of one object file, mapped into this process. Function pointers
    taken from it stay valid while it lives; the pages are unmapped when it is collected."""

    def __init__(self, base: int, size: int, symbols: dict):
        self.base = base
        self.size = size
        self._symbols = symbols
        self._finalizer = weakref.finalize(self, _c().munmap, base, size)
        # not at interpreter exit: a Session's worker may still be polling for work in
        # compiled code (threads.IDLE_US) while atexit handlers run, and unmapping it then
        # crashed the process (the OS takes the pages back at exit anyway)
        self._finalizer.atexit = False

    def address(self, name: str) -> int:
        """Address of the defined global symbol `name`, 0 when there is none."""
        return self._symbols.get(name, 0)


class _Section:
    __slots__ = ("index", "type", "flags", "offset", "size", "link", "info", "align", "at")

    def __init__(self, index, fields):
        _, self.type, self.flags, _, self.offset, self.size, self.link, self.info, self.align, _ = fields
        self.index = index
        self.at = None   # offset in the mapping, for allocated sections


def _cstr(table: bytes, offset: int) -> str:
    end = table.index(b"\0", offset)
    return table[offset:end].decode()


def _sections(data: bytes) -> list[_Section]:
    if len(data) < _EHDR.size:
        raise Unsupported("not an ELF object: too short")
    ident, e_type, machine, _, _, _, shoff, _, _, _, _, shentsize, shnum, _ = _EHDR.unpack_from(data)
    if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
        raise Unsupported("not a 64-bit little-endian ELF file")
    if e_type != ET_REL or machine != EM_X86_64:
        raise Unsupported(f"not an x86-64 relocatable object (type {e_type}, machine {machine})")
    if shentsize != _SHDR.size or shnum == 0 or shoff + shnum * shentsize > len(data):
        raise Unsupported("unexpected section header table")
    return [_Section(i, _SHDR.unpack_from(data, shoff + i * shentsize)) for i in range(shnum)]


def _check_section(s: _Section, data: bytes) -> None:
    if s.flags & SHF_TLS or s.type in (SHT_INIT_ARRAY, SHT_FINI_ARRAY, SHT_PREINIT_ARRAY):
        raise Unsupported(f"section {s.index}: thread-local data or static constructors")
    if s.flags & SHF_WRITE and s.flags & SHF_EXECINSTR:
        raise Unsupported(f"section {s.index} is both writable and executable")
    if s.type != SHT_NOBITS and s.offset + s.size > len(data):
        raise Unsupported(f"section {s.index} runs past the end of the file")
    if s.align & (s.align - 1) or s.align > PAGE:
        raise Unsupported(f"section {s.index}: alignment {s.align}")


def _symbols(data: bytes, sections: list[_Section]) -> list[tuple]:
    """(name, binding, shndx, value) of each symbol-table entry, in order."""
    tables = [s for s in sections if s.type == SHT_SYMTAB]
    if len(tables) != 1:
        raise Unsupported(f"{len(tables)} symbol tables")
    symtab = tables[0]
    strtab = sections[symtab.link]
    names = data[strtab.offset:strtab.offset + strtab.size]
    out = []
    for i in range(symtab.size // _SYM.size):
        name, info, _, shndx, value, _ = _SYM.unpack_from(data, symtab.offset + i * _SYM.size)
        kind = info & 0xF
        out.append((_cstr(names, name) if name and kind != STT_SECTION else "", info >> 4, shndx, value))
    return out


_RELA_DTYPE = np.dtype([("offset", "<u8"), ("info", "<u8"), ("addend", "<i8")])


class _Relocs:
    """The relocations patching one allocated section, as arrays (a kernel module has
    thousands, nearly all 64-bit absolute: patched in one numpy operation)."""

    def __init__(self, target: _Section, table: np.ndarray):
        self.target = target
        self.offset = table["offset"].astype(np.int64)
        self.kind = (table["info"] & 0xFFFFFFFF).astype(np.int64)
        self.sym = (table["info"] >> np.uint64(32)).astype(np.int64)
        self.addend = table["addend"]


def _relocations(data: bytes, sections: list[_Section]) -> list[_Relocs]:
    """The relocations of every allocated section (those of debug sections are not needed to run)."""
    out = []
    for s in sections:
        if s.type not in (SHT_RELA, SHT_REL):
            continue
        target = sections[s.info] if s.info < len(sections) else None
        if target is None or not target.flags & SHF_ALLOC:
            continue
        if s.type == SHT_REL:
            raise Unsupported("REL relocations (x86-64 objects use RELA)")
        if s.offset + s.size > len(data):
            raise Unsupported(f"relocation section {s.index} runs past the end of the file")
        r = _Relocs(target, np.frombuffer(data, _RELA_DTYPE, s.size // _RELA_DTYPE.itemsize, s.offset))
        unknown = ~np.isin(r.kind, _KNOWN_RELOCS)
        if unknown.any():
            raise Unsupported(f"relocation type {int(r.kind[unknown][0])}")
        width = np.where(np.isin(r.kind, (R_64, R_PC64)), 8, 4)
        if (r.offset + width > target.size).any():
            raise Unsupported(f"relocation outside section {target.index}")
        out.append(r)
    return out


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a if a > 1 else n


def load(data: bytes) -> LoadedObject:
    """Map the object file `data` into this process (see the module docstring); raises
    Unsupported for anything the loader does not handle, before mapping anything."""
    if not host_supported():
        raise Unsupported("host is not x86-64 Linux")
    sections = _sections(data)
    alloc = [s for s in sections if s.flags & SHF_ALLOC]
    for s in alloc:
        _check_section(s, data)
    symbols = _symbols(data, sections)
    relocs = _relocations(data, sections)
    loaded = {s.index for s in alloc}
    libc = _c()

    # external symbols: resolved in the process; calls to them go through a stub, GOT
    # relocations through a slot, both placed in the mapping itself (so always in reach)
    external: dict[int, int] = {}
    stubs: dict[int, int] = {}
    got: dict[int, int] = {}
    uses = {use for r in relocs for use in zip(r.sym.tolist(), r.kind.tolist())}   # (np.unique(axis=) imports numpy.ma)
    for sym, kind in sorted(uses):
        if sym >= len(symbols):
            raise Unsupported(f"relocation against symbol {sym} of {len(symbols)}")
        name, bind, shndx, _ = symbols[sym]
        if shndx == SHN_UNDEF and sym and sym not in external:
            address = libc.symbol(name) if name else None
            if address is None and bind != STB_WEAK:
                raise Unsupported(f"unresolved symbol {name!r}")
            external[sym] = address or 0
        elif shndx not in loaded and shndx not in (SHN_UNDEF, SHN_ABS):
            raise Unsupported(f"relocation against symbol {name!r} of section {shndx}")
        if kind == R_PLT32 and sym in external:
            stubs.setdefault(sym, len(stubs))
        if kind in _GOT_RELOCS:
            got.setdefault(sym, len(got))

    # layout: code (+ stubs), then read-only data (+ GOT), then writable data, page-aligned
    groups = ([s for s in alloc if s.flags & SHF_EXECINSTR],
              [s for s in alloc if not s.flags & (SHF_EXECINSTR | SHF_WRITE)],
              [s for s in alloc if s.flags & SHF_WRITE and not s.flags & SHF_EXECINSTR])
    at, spans = 0, []
    stub_at = got_at = 0
    for g, group in enumerate(groups):
        start = at
        for s in group:
            at = _align(at, max(s.align, 1))
            s.at = at
            at += s.size
        if g == 0 and stubs:
            stub_at = at = _align(at, _STUB_SIZE)
            at += _STUB_SIZE * len(stubs)
        if g == 1 and got:
            got_at = at = _align(at, 8)
            at += 8 * len(got)
        at = _align(at, PAGE)
        spans.append((start, at))
    size = max(at, PAGE)
    image = bytearray(size)
    for s in alloc:
        if s.type != SHT_NOBITS:
            image[s.at:s.at + s.size] = data[s.offset:s.offset + s.size]

    base = libc.mmap(None, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if base is None or base == ctypes.c_void_p(-1).value:
        raise Unsupported(f"mmap failed (errno {ctypes.get_errno()})")
    try:
        def address_of(sym: int) -> int:
            if sym in external:
                return external[sym]
            _, _, shndx, value = symbols[sym]
            if shndx == SHN_UNDEF:   # the null symbol: the addend alone
                return 0
            return value if shndx == SHN_ABS else base + sections[shndx].at + value

        for sym, i in stubs.items():
            struct.pack_into("<6sQ", image, stub_at + i * _STUB_SIZE, _STUB, external[sym])
        for sym, i in got.items():
            struct.pack_into("<Q", image, got_at + 8 * i, address_of(sym))
        addresses = np.array([address_of(i) for i in range(len(symbols))], dtype=np.uint64)
        pixels = np.frombuffer(image, np.uint8)
        stubbed = np.array(sorted(stubs), dtype=np.int64)
        for r in relocs:
            at = r.offset + r.target.at
            wide = r.kind == R_64   # S + A, modulo 2**64
            if wide.any():
                values = addresses[r.sym[wide]] + r.addend[wide].view(np.uint64)
                pixels[(at[wide, None] + np.arange(8)).ravel()] = values.astype("<u8").view(np.uint8)
            # S + A - P, signed 32-bit: PC-relative references to this object's own code and data
            near = ((r.kind == R_PC32) | (r.kind == R_PLT32)) & ~np.isin(r.sym, stubbed)
            if near.any():
                values = addresses[r.sym[near]].astype(np.int64) + r.addend[near] - (base + at[near])
                if values.min() < -(1 << 31) or values.max() >= 1 << 31:
                    raise Unsupported("PC-relative relocation out of 32-bit range")
                pixels[(at[near, None] + np.arange(4)).ravel()] = values.astype("<i4").view(np.uint8)
            for k in np.flatnonzero(~(wide | near)):
                sym, kind = int(r.sym[k]), int(r.kind[k])
                _apply(image, base, int(at[k]), kind, int(r.addend[k]), address_of(sym),
                       base + stub_at + stubs[sym] * _STUB_SIZE if kind == R_PLT32 and sym in stubs else None,
                       base + got_at + 8 * got[sym] if kind in _GOT_RELOCS else None)
        ctypes.memmove(base, bytes(image), size)
        for (start, end), prot in zip(spans, (PROT_READ | PROT_EXEC, PROT_READ, PROT_READ | PROT_WRITE)):
            if end > start and libc.mprotect(base + start, end - start, prot) != 0:
                raise Unsupported(f"mprotect failed (errno {ctypes.get_errno()})")
        exports = {}
        for name, bind, shndx, value in symbols:
            if name and bind != STB_LOCAL and shndx in loaded:
                exports[name] = base + sections[shndx].at + value
    except BaseException:
        libc.munmap(base, size)
        raise
    return LoadedObject(base, size, exports)


def _apply(image: bytearray, base: int, at: int, kind: int, addend: int, symbol: int, stub, slot) -> None:
    """Patch one relocation at offset `at` of the image (mapped at `base`): those `load`
    does not patch all at once (absolute 64-bit, PC-relative 32-bit without a stub)."""
    place = base + at
    if kind == R_NONE:
        return
    if kind == R_PC64:
        struct.pack_into("<Q", image, at, (symbol + addend - place) & 0xFFFFFFFFFFFFFFFF)
        return
    if kind in (R_PC32, R_PLT32):
        value = (stub if stub is not None else symbol) + addend - place
    elif kind in _GOT_RELOCS:
        value = slot + addend - place
    else:   # R_32 (zero-extended), R_32S (sign-extended)
        value = symbol + addend
        if kind == R_32:
            if not 0 <= value < 1 << 32:
                raise Unsupported("R_X86_64_32 value out of range")
            struct.pack_into("<I", image, at, value)
            return
    if not -(1 << 31) <= value < 1 << 31:
        raise Unsupported(f"relocation type {kind}: value out of 32-bit range")
    struct.pack_into("<i", image, at, value)
