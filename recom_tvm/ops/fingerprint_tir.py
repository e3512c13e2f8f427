"""TF's string hash in TIR: Fingerprint64 (farmhash's farmhashna::Hash64) and StringToHashBucketFast on the device.

Strings arrive as one uint8 buffer of their bytes laid end to end plus int64 offsets [n + 1] (string i is
data[offsets[i]: offsets[i + 1]]); one thread hashes one string (CUDA: blockIdx / threadIdx; llvm: a parallel loop).
The arithmetic is uint64 throughout: multiplies wrap mod 2^64 exactly as in the C++, so the results are bit-exact
with `tf.strings.to_hash_bucket_fast` (tests/test_fingerprint_tir.py against TF and the host hash
recom_tvm.runtime.fingerprint).

Words are fetched little-endian byte by byte (strings start anywhere in the buffer: no alignment to rely on; LLVM
folds the bytes back into one unaligned load). Length classes follow farmhashna::Hash64: 0, 1-3, 4-7, 8-16,
17-32, 33-64, then the 64-byte chunk loop over a 56-byte state with the last 64 bytes mixed in with `mul`.
"""

from __future__ import annotations

import contextlib

import tvm
from tvm import tirx
from tvm.script import tirx as T

from ..runtime.fused_layout import TEXT_DECIMAL

U64 = "uint64"
I64 = "int64"


def _u64(value: int) -> tirx.PrimExpr:
    """A uint64 constant; values >= 2^63 as the bits of an int64 (IntImm holds int64)."""
    value &= (1 << 64) - 1
    if value < 1 << 63:
        return tirx.const(value, U64)
    return tirx.reinterpret(U64, tirx.const(value - (1 << 64), I64))


K0 = _u64(0xC3A5C85C97CB3127)
K1 = _u64(0xB492B66FBE98F273)
K2 = _u64(0x9AE16A3B2F90404F)
K_MUL = _u64(0xC6A4A7935BD1E995)  # FingerprintCat64's multiplier
_MASK = (1 << 64) - 1
SEED = 81
# the long hash's initial y and z are constants: y = seed * k1 + 113, z = ShiftMix(y * k2 + 113) * k2
_Y0 = (SEED * 0xB492B66FBE98F273 + 113) & _MASK
_Z0 = (((_Y0 * 0x9AE16A3B2F90404F + 113) & _MASK) ^ (((_Y0 * 0x9AE16A3B2F90404F + 113) & _MASK) >> 47))
_Z0 = (_Z0 * 0x9AE16A3B2F90404F) & _MASK

# Every intermediate lives in a slot of one thread-local uint64 buffer (registers after codegen), written by
# statements: no expression is duplicated however deep the hash nests.
(A, B, C, D, E, F, G, HH, YY, ZZ, MUL, X, Y, Z, V0, V1, W0, W1, TA, TB, TC, L, LV, H) = range(24)
N_SLOTS = 24


_LEAVES = (type(tirx.Var("v", U64)), type(tirx.decl_buffer((1,), U64)[0]), type(tirx.const(1, U64)))


def _once(v: tirx.PrimExpr, fn) -> tirx.PrimExpr:
    """fn(v) where fn uses v twice: a compound v is bound to a Let variable first (a subtree with Let nodes must
    not appear twice: its variables would be defined twice)."""
    if isinstance(v, _LEAVES):
        return fn(v)
    t = tirx.Var("t", U64)
    return tirx.Let(t, v, fn(t))


def rot(v: tirx.PrimExpr, s: int) -> tirx.PrimExpr:
    """Rotate right by a constant 0 < s < 64."""
    return _once(v, lambda v: (v >> _u64(s)) | (v << _u64(64 - s)))


def shift_mix(v: tirx.PrimExpr) -> tirx.PrimExpr:
    return _once(v, lambda v: v ^ (v >> _u64(47)))


def fetch64(data, p: tirx.PrimExpr) -> tirx.PrimExpr:
    """8 bytes at data[p] as a little-endian uint64."""
    if isinstance(data, PackedBytes):
        return data.fetch64(p)
    word = tirx.Cast(U64, data[p])
    for i in range(1, 8):
        word = word | (tirx.Cast(U64, data[p + i]) << _u64(8 * i))
    return word


def fetch32(data, p: tirx.PrimExpr) -> tirx.PrimExpr:
    """4 bytes at data[p] as a little-endian uint32, widened to uint64."""
    if isinstance(data, PackedBytes):
        return data.fetch64(p) & _u64(0xFFFFFFFF)
    word = tirx.Cast(U64, data[p])
    for i in range(1, 4):
        word = word | (tirx.Cast(U64, data[p + i]) << _u64(8 * i))
    return word


class PackedBytes:
    """Bytes stored little-endian in the words (int32 or int64) of a buffer from word `base` on: `data[p]` is
    byte p (as uint64), fetch64 / fetch32 read a word's worth with two or three word loads and a funnel shift
    (strings start at any byte). The words after the last byte must be readable: the writer pads two words."""

    def __init__(self, buf, base: tirx.PrimExpr) -> None:
        self.buf, self.base = buf, base
        self.wide = str(buf.dtype) == I64
        self.shift = 3 if self.wide else 2

    def word(self, w: tirx.PrimExpr) -> tirx.PrimExpr:
        """Word w of the bytes as uint64 (an int32 word zero-extended, not sign-extended)."""
        v = self.buf[self.base + w]
        return tirx.Cast(U64, v) if self.wide else tirx.Cast(U64, tirx.Cast("uint32", v))

    def __getitem__(self, p: tirx.PrimExpr) -> tirx.PrimExpr:
        p = tirx.Cast(I64, p)
        w = tirx.shift_right(p, tirx.const(self.shift, I64))
        s = tirx.Cast(U64, tirx.bitwise_and(p, tirx.const((1 << self.shift) - 1, I64)) * tirx.const(8, I64))
        return (self.word(w) >> s) & _u64(0xFF)

    def fetch64(self, p: tirx.PrimExpr) -> tirx.PrimExpr:
        p = tirx.Cast(I64, p)
        w = tirx.shift_right(p, tirx.const(self.shift, I64))
        s = tirx.Cast(U64, tirx.bitwise_and(p, tirx.const((1 << self.shift) - 1, I64)) * tirx.const(8, I64))
        if self.wide:  # lo >> s | hi << (64 - s), written so that s = 0 shifts by 63 then 1 (never by 64)
            return (self.word(w) >> s) | ((self.word(w + 1) << _u64(1)) << (_u64(63) - s))
        lo = self.word(w) | (self.word(w + 1) << _u64(32))
        return (lo >> s) | ((self.word(w + 2) << _u64(32)) << (_u64(32) - s))


# uint64 sums and products through ad() / mu(): plain operators on CUDA, 32-bit halves on llvm (see _wadd)
_WRAP = [False]


def ad(*terms: tirx.PrimExpr) -> tirx.PrimExpr:
    """The sum of terms mod 2^64."""
    out = terms[0]
    for t in terms[1:]:
        out = _bind(out, t, _wadd) if _WRAP[0] else out + t
    return out


def mu(a: tirx.PrimExpr, b: tirx.PrimExpr) -> tirx.PrimExpr:
    """a * b mod 2^64."""
    return _bind(a, b, _wmul) if _WRAP[0] else a * b


@T.macro
def hash_len16(r, dst, u, v, mul):
    """r[dst] = farmhash's HashLen16(u, v, mul); u, v, mul must not read r[L] / r[LV] (scratch) and are read
    before r[dst] is written. v goes through a slot: an argument expression used twice would define its Let
    variables twice."""
    r[LV] = v
    r[L] = mu(u ^ r[LV], mul)
    r[L] = shift_mix(r[L])
    r[L] = mu(r[LV] ^ r[L], mul)
    r[L] = shift_mix(r[L])
    r[dst] = mu(r[L], mul)


@T.macro
def fingerprint_cat64(r, dst, fp1, fp2):
    """r[dst] = tsl::FingerprintCat64(fp1, fp2) (crossed columns: h = FingerprintCat64(h, feature_hash))."""
    r[L] = mu(fp2, K_MUL)
    r[L] = (fp1 ^ K_MUL) ^ mu(shift_mix(r[L]), K_MUL)
    r[L] = mu(r[L], K_MUL)
    r[L] = mu(shift_mix(r[L]), K_MUL)
    r[dst] = shift_mix(r[L])


@T.macro
def _len0to16(r, data, s, n, nu):
    # branches, not selects: a select would load the bytes of every class (past the end of a short string)
    if n >= 8:
        r[MUL] = ad(K2, nu << _u64(1))
        r[A] = ad(fetch64(data, s), K2)
        r[B] = fetch64(data, s + n - 8)
        hash_len16(r, H, ad(mu(rot(r[B], 37), r[MUL]), r[A]), mu(ad(rot(r[A], 25), r[B]), r[MUL]), r[MUL])
    elif n >= 4:
        r[A] = fetch32(data, s)
        r[B] = fetch32(data, s + n - 4)
        r[MUL] = ad(K2, nu << _u64(1))
        hash_len16(r, H, ad(nu, r[A] << _u64(3)), r[B], r[MUL])  # < 2^36: no wrap
    elif n > 0:
        # y = s[0] + (s[n/2] << 8), z = n + (s[n-1] << 2): both < 2^32, so these sums never wrap
        r[A] = mu(tirx.Cast(U64, data[s]) | (tirx.Cast(U64, data[s + tirx.shift_right(n, 1)]) << _u64(8)), K2) ^ \
            mu(ad(nu, tirx.Cast(U64, data[s + n - 1]) << _u64(2)), K0)
        r[H] = mu(shift_mix(r[A]), K2)
    else:
        r[H] = K2


@T.macro
def _len17to32(r, data, s, n, nu):
    r[MUL] = ad(K2, nu << _u64(1))
    r[A] = mu(fetch64(data, s), K1)
    r[B] = fetch64(data, s + 8)
    r[C] = mu(fetch64(data, s + n - 8), r[MUL])
    r[D] = mu(fetch64(data, s + n - 16), K2)
    r[E] = ad(r[A], r[B])
    r[F] = ad(r[B], K2)
    hash_len16(r, H, ad(rot(r[E], 43), rot(r[C], 30), r[D]), ad(r[A], rot(r[F], 18), r[C]), r[MUL])


@T.macro
def _len33to64(r, data, s, n, nu):
    r[MUL] = ad(K2, nu << _u64(1))
    r[A] = mu(fetch64(data, s), K2)
    r[B] = fetch64(data, s + 8)
    r[C] = mu(fetch64(data, s + n - 8), r[MUL])
    r[D] = mu(fetch64(data, s + n - 16), K2)
    r[E] = ad(r[A], r[B])
    r[YY] = ad(rot(r[E], 43), rot(r[C], 30), r[D])
    r[F] = ad(r[B], K2)
    hash_len16(r, ZZ, r[YY], ad(r[A], rot(r[F], 18), r[C]), r[MUL])
    r[E] = mu(fetch64(data, s + 16), r[MUL])
    r[F] = fetch64(data, s + 24)
    r[G] = mu(ad(r[YY], fetch64(data, s + n - 32)), r[MUL])
    r[HH] = mu(ad(r[ZZ], fetch64(data, s + n - 24)), r[MUL])
    r[TA] = ad(r[E], r[F])
    r[TB] = ad(r[F], r[A])
    hash_len16(r, H, ad(rot(r[TA], 43), rot(r[G], 30), r[HH]), ad(r[E], rot(r[TB], 18), r[G]), r[MUL])


@T.macro
def _weak32(r, data, p, a, b, out0, out1):
    """WeakHashLen32WithSeeds(data[p:p+32], a, b) -> (r[out0], r[out1]); a, b are read before either is written."""
    r[TA] = ad(a, fetch64(data, p))
    r[TB] = ad(b, r[TA], fetch64(data, p + 24))
    r[TB] = rot(r[TB], 21)
    r[TC] = r[TA]
    r[TA] = ad(r[TA], fetch64(data, p + 8), fetch64(data, p + 16))
    r[TB] = ad(r[TB], rot(r[TA], 44))
    r[out0] = ad(r[TA], fetch64(data, p + 24))
    r[out1] = ad(r[TB], r[TC])


@T.macro
def _chunk(r, data, p, mul, last):
    """One 64-byte round of the long hash at data[p]; `last`: the final round (x ^= w1 * 9, y += v0 * 9)."""
    r[X] = ad(r[X], r[Y], r[V0], fetch64(data, p + 8))
    r[X] = mu(rot(r[X], 37), mul)
    r[Y] = ad(r[Y], r[V1], fetch64(data, p + 48))
    r[Y] = mu(rot(r[Y], 42), mul)
    if last:
        r[X] = r[X] ^ mu(r[W1], _u64(9))
        r[Y] = ad(r[Y], mu(r[V0], _u64(9)), fetch64(data, p + 40))
    else:
        r[X] = r[X] ^ r[W1]
        r[Y] = ad(r[Y], r[V0], fetch64(data, p + 40))
    r[Z] = ad(r[Z], r[W0])
    r[Z] = mu(rot(r[Z], 33), mul)
    _weak32(r, data, p, mu(r[V1], mul), ad(r[X], r[W0]), V0, V1)
    _weak32(r, data, p + 32, ad(r[Z], r[W1]), ad(r[Y], fetch64(data, p + 16)), W0, W1)
    r[TA] = r[Z]  # swap(z, x)
    r[Z] = r[X]
    r[X] = r[TA]


@T.macro
def _long(r, data, s, n):
    """farmhashna::Hash64 for n > 64 -> r[H]."""
    r[X] = ad(_u64((SEED * 0x9AE16A3B2F90404F) & _MASK), fetch64(data, s))
    r[Y] = _u64(_Y0)
    r[Z] = _u64(_Z0)
    r[V0] = _u64(0)
    r[V1] = _u64(0)
    r[W0] = _u64(0)
    r[W1] = _u64(0)
    for c in T.serial(T.shift_right(n - 1, 6)):  # every full 64-byte chunk but the last: 1 to 64 bytes left
        _chunk(r, data, s + c * 64, K1, False)
    r[MUL] = ad(K1, (r[Z] & _u64(0xFF)) << _u64(1))
    r[W0] = ad(r[W0], tirx.Cast(U64, T.bitwise_and(n - 1, T.int64(63))))
    r[V0] = ad(r[V0], r[W0])
    r[W0] = ad(r[W0], r[V0])
    _chunk(r, data, s + n - 64, r[MUL], True)  # the last 64 bytes (overlapping the loop's last chunk)
    hash_len16(r, A, r[V0], r[W0], r[MUL])
    hash_len16(r, B, r[V1], r[W1], r[MUL])
    hash_len16(r, H, ad(r[A], mu(shift_mix(r[Y]), K0), r[Z]), ad(r[B], r[X]), r[MUL])


@T.macro
def fingerprint64(r, data, s, n):
    """r[H] = Fingerprint64(data[s: s + n]); r: a local uint64 buffer of N_SLOTS."""
    if n <= 16:
        _len0to16(r, data, s, n, tirx.Cast(U64, n))
    elif n <= 32:
        _len17to32(r, data, s, n, tirx.Cast(U64, n))
    elif n <= 64:
        _len33to64(r, data, s, n, tirx.Cast(U64, n))
    else:
        _long(r, data, s, n)


# Why llvm needs _wadd / _wmul: TVM 0.27's LLVM codegen emits `add nuw` / `mul nuw` for unsigned 64-bit
# arithmetic, so a wrap is poison and LLVM may fold the hash to anything (seen: ((a >> 25) | (a << 39)) * (k2 + 20)
# compiled to the constant 0xffff...ffff). The hash needs arithmetic mod 2^64; in 32-bit halves every step provably
# fits (the nuw flags are then true). CUDA's C source has wrapping unsigned arithmetic: plain operators there.
_M32 = _u64(0xFFFFFFFF)
_S32 = _u64(32)


@contextlib.contextmanager
def _wrapping(on: bool):
    """ad() / mu() emit the 32-bit-halves form while the kernel's TVMScript is parsed (macros expand then)."""
    prev, _WRAP[0] = _WRAP[0], on
    try:
        yield
    finally:
        _WRAP[0] = prev


def _wadd(a: tirx.PrimExpr, b: tirx.PrimExpr) -> tirx.PrimExpr:
    """a + b mod 2^64 from 32-bit halves: no intermediate exceeds 2^64."""
    lo = (a & _M32) + (b & _M32)
    hi = (a >> _S32) + (b >> _S32) + (lo >> _S32)
    return ((hi & _M32) << _S32) | (lo & _M32)


def _wmul(a: tirx.PrimExpr, b: tirx.PrimExpr) -> tirx.PrimExpr:
    """a * b mod 2^64 from 32-bit halves: a0 * b0 < 2^64, the cross terms are taken mod 2^32 before shifting."""
    a0, a1, b0, b1 = a & _M32, a >> _S32, b & _M32, b >> _S32
    p00 = a0 * b0
    hi = (p00 >> _S32) + ((a0 * b1) & _M32) + ((a1 * b0) & _M32)
    return ((hi & _M32) << _S32) | (p00 & _M32)


def _bind(a: tirx.PrimExpr, b: tirx.PrimExpr, fn) -> tirx.PrimExpr:
    """fn(a, b) with non-trivial operands bound once (Let), so the decomposition duplicates no subtree."""
    va, vb = tirx.Var("wa", U64), tirx.Var("wb", U64)
    return tirx.Let(va, a, tirx.Let(vb, b, fn(va, vb)))


def fingerprint_func(target_kind: str = "llvm", num_buckets: int | None = None, threads: int = 128,
                     buckets_param: bool = False) -> tirx.PrimFunc:
    """A PrimFunc hashing n strings (data uint8 [bytes], offsets int64 [n + 1]) into out [n].

    num_buckets None and not buckets_param: out is uint64, the raw Fingerprint64.
    num_buckets an int: out is int64, Fingerprint64 mod num_buckets (unsigned, as StringToHashBucketFast; a constant
    divisor, so the compiler turns the 64-bit modulo into multiplies).
    buckets_param: out is int64 and the bucket count is a trailing int64 scalar parameter (the same for all strings).
    target_kind "cuda": one thread per string, `threads` per block; "llvm": a parallel loop over the strings.
    """
    if target_kind not in ("cuda", "llvm"):
        raise ValueError(f"fingerprint_func: target kind {target_kind!r} is not 'cuda' or 'llvm'")
    if num_buckets is not None and not 1 <= int(num_buckets) < 1 << 63:
        raise ValueError(f"StringToHashBucketFast: num_buckets must be in [1, 2^63), got {num_buckets}")
    gpu = target_kind == "cuda"
    modulo = num_buckets is not None or buckets_param
    out_dtype = I64 if modulo else U64
    nb_const = _u64(int(num_buckets)) if num_buckets is not None else None

    @T.macro
    def one(data, offsets, out, nb, i):
        r = T.alloc_buffer((N_SLOTS,), U64, scope="local")
        fingerprint64(r, data, offsets[i], offsets[i + 1] - offsets[i])
        if modulo:
            out[i] = T.Cast(I64, T.truncmod(r[H], nb))
        else:
            out[i] = r[H]

    @T.macro
    def body(data, offsets, out, nb):
        n = out.shape[0]
        if gpu:
            if n > T.int64(0):  # CUDA rejects an empty grid
                for bx in T.thread_binding(T.ceildiv(n, T.int64(threads)), thread="blockIdx.x"):
                    for tx in T.thread_binding(T.int64(threads), thread="threadIdx.x"):
                        with T.sblock("fingerprint"):
                            T.reads(data[0:data.shape[0]], offsets[0:n + 1])
                            T.writes(out[0:n])
                            if bx * T.int64(threads) + tx < n:
                                one(data, offsets, out, nb, bx * T.int64(threads) + tx)
        else:
            for i in T.parallel(n):
                with T.sblock("fingerprint"):
                    T.reads(data[0:data.shape[0]], offsets[0:n + 1])
                    T.writes(out[0:n])
                    one(data, offsets, out, nb, i)

    with _wrapping(not gpu):
        return _fingerprint_kernel(gpu, body, out_dtype, nb_const, buckets_param)


def _fingerprint_kernel(gpu, body, out_dtype, nb_const, buckets_param):
    if buckets_param:
        @T.prim_func(private=True, s_tir=True)
        def kernel_p(var_data: T.handle, var_offsets: T.handle, var_out: T.handle, num_buckets: T.int64):
            T.func_attr({"tirx.is_scheduled": gpu, "tirx.noalias": True})
            nbytes, n = T.int64(), T.int64()
            data = T.match_buffer(var_data, (nbytes,), "uint8")
            out = T.match_buffer(var_out, (n,), out_dtype)
            offsets = T.match_buffer(var_offsets, (n + 1,), I64)
            body(data, offsets, out, T.Cast(U64, num_buckets))

        return kernel_p

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_data: T.handle, var_offsets: T.handle, var_out: T.handle):
        T.func_attr({"tirx.is_scheduled": gpu, "tirx.noalias": True})
        nbytes, n = T.int64(), T.int64()
        data = T.match_buffer(var_data, (nbytes,), "uint8")
        out = T.match_buffer(var_out, (n,), out_dtype)
        offsets = T.match_buffer(var_offsets, (n + 1,), I64)
        body(data, offsets, out, nb_const)

    return kernel


# powers of ten up to 10^19 (the largest below 2^64): a uint64 magnitude's digit count is 1 + how many it reaches
_TENS = [10 ** k for k in range(1, 20)]
TEXT_WORDS = 4  # the decimal text of an int64 (at most 20 bytes) in int64 words, one spare for fetch64's successor


def _digits_past_one(mag: tirx.PrimExpr) -> tirx.PrimExpr:
    """How many of 10^1 .. 10^19 the uint64 mag reaches (its decimal digits minus one)."""
    total = tirx.Cast(U64, mag >= _u64(_TENS[0]))
    for p in _TENS[1:]:
        total = total + tirx.Cast(U64, mag >= _u64(p))
    return total


@T.macro
def decimal_text(txt, m, u):
    """txt (local int64 [TEXT_WORDS]) <- TF's AsString of the int64 whose bits are the uint64 u (decimal, '-' for
    negatives), little-endian bytes as PackedBytes reads them; m (local uint64 [4]) <- [scratch, the text's length,
    the sign, scratch]. All in uint64: a signed view of u would let TVM's simplifier assume a cast uint64 is >= 0,
    and the magnitude of a negative, ~u + 1, never wraps (llvm's nuw, see _wadd)."""
    for w in T.serial(TEXT_WORDS):
        txt[w] = T.int64(0)
    m[2] = T.shift_right(u, _u64(63))
    m[0] = T.if_then_else(m[2] == _u64(1), T.bitwise_not(u) + _u64(1), u)
    m[1] = m[2] + _u64(1) + _digits_past_one(m[0])
    if m[2] == _u64(1):
        txt[0] = T.int64(45)  # '-'
    for j in T.serial(20):  # the digits from the last: digit j at byte m[3] = length - 1 - j
        if T.Cast(U64, j) < m[1] - m[2]:
            m[3] = m[1] - _u64(1) - T.Cast(U64, j)
            txt[T.Cast(I64, m[3] >> _u64(3))] = txt[T.Cast(I64, m[3] >> _u64(3))] | T.shift_left(
                T.Cast(I64, T.truncmod(m[0], _u64(10))) + T.int64(48), T.Cast(I64, (m[3] & _u64(7)) * _u64(8)))
            m[0] = T.truncdiv(m[0], _u64(10))


def hash_packed_func(target_kind: str, num_segments: int, region: int, packed_dtype: str = I64,
                     threads: int = 128) -> tirx.PrimFunc:
    """StringToHashBucketFast of the strings a request ships inside the fused kernel's packed input, each id written
    where the kernel reads it (in place: the packed buffer is the output). recom_tvm.runtime.fused_layout
    (HASH_*) describes the region at word `region`: per segment (a hashed column) its first string and where
    its ids go, the strings' byte offsets, their bytes. Parameters: (packed [P], num_buckets int64 [S], text int64
    [S], n: the number of strings). A segment whose text is TEXT_DECIMAL ships int64 values (8 bytes each) and
    hashes their decimal text (TF's AsString of integers), made here. One thread per string; it finds its segment
    by binary search over the first strings."""
    if target_kind not in ("cuda", "llvm"):
        raise ValueError(f"hash_packed_func: target kind {target_kind!r} is not 'cuda' or 'llvm'")
    if packed_dtype not in (I64, "int32"):
        raise ValueError(f"hash_packed_func: packed dtype {packed_dtype!r}")
    gpu = target_kind == "cuda"
    S = int(num_segments)
    R = int(region)
    steps = max(1, int(S).bit_length())  # binary search over S + 1 first-string entries
    wide = packed_dtype == I64

    def as_i64(v):
        return v if wide else tirx.Cast(I64, v)

    @T.macro
    def one(packed, nbt, text, n, i):
        r = T.alloc_buffer((N_SLOTS,), U64, scope="local")
        seg = T.alloc_buffer((2,), I64, scope="local")  # [lo, hi): the segment holding string i
        seg[0] = T.int64(0)
        seg[1] = T.int64(S)
        for _ in T.serial(steps):
            if seg[1] - seg[0] > T.int64(1):
                if as_i64(packed[R + T.shift_right(seg[0] + seg[1], T.int64(1))]) <= i:
                    seg[0] = T.shift_right(seg[0] + seg[1], T.int64(1))
                else:
                    seg[1] = T.shift_right(seg[0] + seg[1], T.int64(1))
        if text[seg[0]] == T.int64(TEXT_DECIMAL):
            txt = T.alloc_buffer((TEXT_WORDS,), I64, scope="local")
            m = T.alloc_buffer((4,), U64, scope="local")
            decimal_text(txt, m, PackedBytes(packed, T.int64(R + 2 * S + 2) + n).fetch64(
                as_i64(packed[R + 2 * S + 1 + i])))
            fingerprint64(r, PackedBytes(txt, T.int64(0)), T.int64(0), T.Cast(I64, m[1]))
        else:
            fingerprint64(r, PackedBytes(packed, T.int64(R + 2 * S + 2) + n), as_i64(packed[R + 2 * S + 1 + i]),
                          as_i64(packed[R + 2 * S + 2 + i]) - as_i64(packed[R + 2 * S + 1 + i]))
        r[H] = T.truncmod(r[H], T.Cast(U64, nbt[seg[0]]))
        if wide:
            packed[as_i64(packed[R + S + 1 + seg[0]]) + i - as_i64(packed[R + seg[0]])] = T.Cast(I64, r[H])
        else:  # saturating, as the host narrows ids (a bucket of 2^31 or more needs an int64 layout anyway)
            packed[as_i64(packed[R + S + 1 + seg[0]]) + i - as_i64(packed[R + seg[0]])] = T.Cast(
                "int32", T.min(r[H], T.uint64(0x7FFFFFFF)))

    with _wrapping(not gpu):
        @T.prim_func(private=True, s_tir=True)
        def kernel(var_packed: T.handle, var_nbt: T.handle, var_text: T.handle, n: T.int64):
            T.func_attr({"tirx.is_scheduled": gpu, "tirx.noalias": True})
            plen = T.int64()
            packed = T.match_buffer(var_packed, (plen,), packed_dtype)
            nbt = T.match_buffer(var_nbt, (S,), I64)
            text = T.match_buffer(var_text, (S,), I64)
            if gpu:
                if n > T.int64(0):
                    for bx in T.thread_binding(T.ceildiv(n, T.int64(threads)), thread="blockIdx.x"):
                        for tx in T.thread_binding(T.int64(threads), thread="threadIdx.x"):
                            with T.sblock("hash_strings"):
                                T.reads(packed[0:plen], nbt[0:S], text[0:S])
                                T.writes(packed[0:plen])
                                if bx * T.int64(threads) + tx < n:
                                    one(packed, nbt, text, n, bx * T.int64(threads) + tx)
            else:
                for i in T.parallel(n):
                    with T.sblock("hash_strings"):
                        T.reads(packed[0:plen], nbt[0:S], text[0:S])
                        T.writes(packed[0:plen])
                        one(packed, nbt, text, n, i)

    return kernel


def fingerprint_cat64_func(target_kind: str = "llvm", threads: int = 128) -> tirx.PrimFunc:
    """A PrimFunc out[i] = FingerprintCat64(a[i], b[i]) over uint64 [n] (one step of a hashed cross; the cross
    kernel itself is future work)."""
    if target_kind not in ("cuda", "llvm"):
        raise ValueError(f"fingerprint_cat64_func: target kind {target_kind!r} is not 'cuda' or 'llvm'")
    gpu = target_kind == "cuda"

    with _wrapping(not gpu):
        @T.prim_func(private=True, s_tir=True)
        def cat64(var_a: T.handle, var_b: T.handle, var_out: T.handle):
            T.func_attr({"tirx.is_scheduled": gpu, "tirx.noalias": True})
            n = T.int64()
            a = T.match_buffer(var_a, (n,), U64)
            b = T.match_buffer(var_b, (n,), U64)
            out = T.match_buffer(var_out, (n,), U64)
            if gpu:
                if n > T.int64(0):
                    for bx in T.thread_binding(T.ceildiv(n, T.int64(threads)), thread="blockIdx.x"):
                        for tx in T.thread_binding(T.int64(threads), thread="threadIdx.x"):
                            with T.sblock("cat64"):
                                T.reads(a[0:n], b[0:n])
                                T.writes(out[0:n])
                                r = T.alloc_buffer((N_SLOTS,), U64, scope="local")
                                if bx * T.int64(threads) + tx < n:
                                    i = bx * T.int64(threads) + tx
                                    fingerprint_cat64(r, H, a[i], b[i])
                                    out[i] = r[H]
            else:
                for i in T.parallel(n):
                    with T.sblock("cat64"):
                        T.reads(a[0:n], b[0:n])
                        T.writes(out[0:n])
                        r = T.alloc_buffer((N_SLOTS,), U64, scope="local")
                        fingerprint_cat64(r, H, a[i], b[i])
                        out[i] = r[H]

    return cat64


def build_fingerprint(target="llvm", num_buckets: int | None = None, threads: int = 128,
                      buckets_param: bool = False) -> tvm.runtime.Module:
    """fingerprint_func compiled alone for `target` ("llvm", "cuda", or a Target): module["main"](data, offsets,
    out[, num_buckets])."""
    from ..build_module import make_target

    tgt = make_target(target)
    kind = tgt.kind.name
    func = fingerprint_func(kind, num_buckets, threads, buckets_param).with_attr("global_symbol", "main")
    mod = tvm.IRModule({"main": func})
    if kind == "cuda":
        from ..cuda_support import prepare_cuda_build

        prepare_cuda_build()
    with tgt:
        return tvm.compile(mod, target=tgt)
