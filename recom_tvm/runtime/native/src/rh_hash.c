/* TF's string hashes: Fingerprint64 (farmhash's farmhashna::Hash64, what StringToHashBucketFast uses),
 * FingerprintCat64 (SparseCross), and AsString's decimal text. Written from the algorithm as the numpy version in
 * recom_tvm/runtime/fingerprint.py states it; bit-exactness against TF is tested on every length class.
 * Little-endian hosts only (x86-64, aarch64): words are read with memcpy. */
#include "rh.h"

static const uint64_t K0 = 0xC3A5C85C97CB3127ULL, K1 = 0xB492B66FBE98F273ULL, K2 = 0x9AE16A3B2F90404FULL;

static inline uint64_t f64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint64_t f32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t rot(uint64_t v, int s) { return s == 0 ? v : (v >> s) | (v << (64 - s)); }
static inline uint64_t smix(uint64_t v) { return v ^ (v >> 47); }

static inline uint64_t len16(uint64_t u, uint64_t v, uint64_t mul) {
  uint64_t a = (u ^ v) * mul;
  a ^= a >> 47;
  uint64_t b = (v ^ a) * mul;
  b ^= b >> 47;
  return b * mul;
}

static uint64_t len0to16(const uint8_t *s, size_t len) {
  if (len >= 8) {
    uint64_t mul = K2 + len * 2, a = f64(s) + K2, b = f64(s + len - 8);
    uint64_t c = rot(b, 37) * mul + a, d = (rot(a, 25) + b) * mul;
    return len16(c, d, mul);
  }
  if (len >= 4) {
    uint64_t mul = K2 + len * 2, a = f32(s);
    return len16(len + (a << 3), f32(s + len - 4), mul);
  }
  if (len > 0) {
    uint32_t y = (uint32_t)s[0] + ((uint32_t)s[len >> 1] << 8);
    uint32_t z = (uint32_t)len + ((uint32_t)s[len - 1] << 2);
    return smix((uint64_t)y * K2 ^ (uint64_t)z * K0) * K2;
  }
  return K2;
}

static uint64_t len17to32(const uint8_t *s, size_t len) {
  uint64_t mul = K2 + len * 2, a = f64(s) * K1, b = f64(s + 8);
  uint64_t c = f64(s + len - 8) * mul, d = f64(s + len - 16) * K2;
  return len16(rot(a + b, 43) + rot(c, 30) + d, a + rot(b + K2, 18) + c, mul);
}

static uint64_t len33to64(const uint8_t *s, size_t len) {
  uint64_t mul = K2 + len * 2, a = f64(s) * K2, b = f64(s + 8);
  uint64_t c = f64(s + len - 8) * mul, d = f64(s + len - 16) * K2;
  uint64_t y = rot(a + b, 43) + rot(c, 30) + d;
  uint64_t z = len16(y, a + rot(b + K2, 18) + c, mul);
  uint64_t e = f64(s + 16) * mul, f = f64(s + 24);
  uint64_t g = (y + f64(s + len - 32)) * mul, h = (z + f64(s + len - 24)) * mul;
  return len16(rot(e + f, 43) + rot(g, 30) + h, e + rot(f + a, 18) + g, mul);
}

static inline void weak32(const uint8_t *s, uint64_t a, uint64_t b, uint64_t *o1, uint64_t *o2) {
  uint64_t w = f64(s), x = f64(s + 8), y = f64(s + 16), z = f64(s + 24);
  a += w;
  b = rot(b + a + z, 21);
  uint64_t c = a;
  a += x;
  a += y;
  b += rot(a, 44);
  *o1 = a + z;
  *o2 = b + c;
}

static uint64_t len_long(const uint8_t *s, size_t len) {
  const uint64_t seed = 81;
  uint64_t x = seed, y = seed * K1 + 113, z = smix(y * K2 + 113) * K2;
  uint64_t v0 = 0, v1 = 0, w0 = 0, w1 = 0, t;
  x = x * K2 + f64(s);
  const uint8_t *end = s + ((len - 1) / 64) * 64;
  const uint8_t *last64 = end + ((len - 1) & 63) - 63;
  do {
    x = rot(x + y + v0 + f64(s + 8), 37) * K1;
    y = rot(y + v1 + f64(s + 48), 42) * K1;
    x ^= w1;
    y += v0 + f64(s + 40);
    z = rot(z + w0, 33) * K1;
    weak32(s, v1 * K1, x + w0, &v0, &v1);
    weak32(s + 32, z + w1, y + f64(s + 16), &w0, &w1);
    t = z; z = x; x = t;
    s += 64;
  } while (s != end);
  uint64_t mul = K1 + ((z & 0xff) << 1);
  s = last64;
  w0 += ((len - 1) & 63);
  v0 += w0;
  w0 += v0;
  x = rot(x + y + v0 + f64(s + 8), 37) * mul;
  y = rot(y + v1 + f64(s + 48), 42) * mul;
  x ^= w1 * 9;
  y += v0 * 9 + f64(s + 40);
  z = rot(z + w0, 33) * mul;
  weak32(s, v1 * mul, x + w0, &v0, &v1);
  weak32(s + 32, z + w1, y + f64(s + 16), &w0, &w1);
  t = z; z = x; x = t;
  return len16(len16(v0, w0, mul) + smix(y) * K0 + z, len16(v1, w1, mul) + x, mul);
}

uint64_t rh_fingerprint64(const uint8_t *s, size_t len) {
  if (len <= 16) return len0to16(s, len);
  if (len <= 32) return len17to32(s, len);
  if (len <= 64) return len33to64(s, len);
  return len_long(s, len);
}

uint64_t rh_fingerprint_cat64(uint64_t a, uint64_t b) {
  const uint64_t kmul = 0xC6A4A7935BD1E995ULL;
  uint64_t r = a ^ kmul;
  r ^= smix(b * kmul) * kmul;
  r *= kmul;
  r = smix(r) * kmul;
  return smix(r);
}

int rh_decimal(int64_t v, char *out) {
  static const char pairs[201] =
      "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
      "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
      "8081828384858687888990919293949596979899";
  char tmp[24];
  uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  int n = 24;
  while (m >= 100) {
    uint64_t q = m / 100;
    int r = (int)(m - q * 100);
    tmp[--n] = pairs[2 * r + 1];
    tmp[--n] = pairs[2 * r];
    m = q;
  }
  if (m >= 10) {
    tmp[--n] = pairs[2 * m + 1];
    tmp[--n] = pairs[2 * m];
  } else {
    tmp[--n] = (char)('0' + m);
  }
  int k = 0;
  if (v < 0) out[k++] = '-';
  memcpy(out + k, tmp + n, (size_t)(24 - n));
  return k + 24 - n;
}
