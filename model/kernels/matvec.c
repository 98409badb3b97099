/* Single-row int8 weight-only matrix-vector product for CPU decoding (AVX-512 VNNI).
 *
 * Why this file exists: decoding one token multiplies one activation row by every weight
 * matrix, so an int8 layer should cost half the memory traffic of a bfloat16 one. torch's CPU
 * kernel for it (torch._weight_int8pack_mm) converts every weight to float32 before an FMA and
 * rounds the activations to bfloat16; on the 2-core AMD EPYC we measure it is no faster than
 * ATen's bfloat16 product and 1.2-1.5x slower than this kernel, whose integer dot products
 * (vpdpbusd) take 64 weights per instruction.
 *
 * y[n] = s[n] * sum_k Q[n,k] x[k] + b[n]; Q int8 (N, K) row-major with one float32 scale per
 * row. x (float32 or bfloat16) is split into two int8 halves, x ~ sx * (hi + lo / 254), so the
 * products are exact integer dot products (unsigned x signed: both halves are offset by +128 and
 * 128 * rowsum(Q) subtracted afterwards); the split keeps ~15 bits of x, finer than bfloat16's
 * 8, so the error is the weights' quantization alone. y is float32 or bfloat16 (round to nearest
 * even).
 *
 * Built on first use by model/cpu_kernels.py (cc -O3 -fopenmp); the OpenMP runtime resolves to
 * the libgomp torch has already loaded, so the kernel shares torch's threads.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 4 /* output rows per block: four independent accumulator chains */

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline void store(void *y, int out_bf16, int64_t n, float v) {
    if (out_bf16)
        ((uint16_t *)y)[n] = f32_to_bf16(v);
    else
        ((float *)y)[n] = v;
}

void gemv_int8(const int8_t *q, const float *scales, const int32_t *rowsum, const void *x, int x_bf16,
               const uint16_t *bias, void *y, int out_bf16, int64_t N, int64_t K) {
    uint8_t stackbuf[2 * 16384];
    uint8_t *hi = K <= 16384 ? stackbuf : (uint8_t *)malloc(2 * (size_t)K);
    uint8_t *lo = hi + K;
    float amax = 0.0f;
    for (int64_t k = 0; k < K; k++) {
        float v = x_bf16 ? bf16_to_f32(((const uint16_t *)x)[k]) : ((const float *)x)[k];
        amax = fmaxf(amax, fabsf(v));
    }
    const float sx = amax > 0.0f ? amax / 127.0f : 1.0f;
    for (int64_t k = 0; k < K; k++) {
        float v = (x_bf16 ? bf16_to_f32(((const uint16_t *)x)[k]) : ((const float *)x)[k]) / sx;
        float h = nearbyintf(v);
        float l = nearbyintf((v - h) * 254.0f);
        hi[k] = (uint8_t)((int)h + 128);
        lo[k] = (uint8_t)((int)l + 128);
    }
    const int64_t K64 = K & ~(int64_t)63;
    const __mmask64 tail = K - K64 ? (__mmask64)((~0ull) >> (64 - (K - K64))) : 0;
    const int64_t blocks = (N + ROWS - 1) / ROWS;

#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t n0 = blk * ROWS;
        const int rows = (int)(N - n0 < ROWS ? N - n0 : ROWS);
        __m512i ah[ROWS], al[ROWS];
        for (int r = 0; r < ROWS; r++) ah[r] = al[r] = _mm512_setzero_si512();
        if (rows == ROWS) {
            const int8_t *w0 = q + n0 * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
            for (int64_t k = 0; k < K64; k += 64) {
                __m512i xh = _mm512_loadu_si512((const void *)(hi + k));
                __m512i xl = _mm512_loadu_si512((const void *)(lo + k));
                __m512i v0 = _mm512_loadu_si512((const void *)(w0 + k));
                __m512i v1 = _mm512_loadu_si512((const void *)(w1 + k));
                __m512i v2 = _mm512_loadu_si512((const void *)(w2 + k));
                __m512i v3 = _mm512_loadu_si512((const void *)(w3 + k));
                ah[0] = _mm512_dpbusd_epi32(ah[0], xh, v0);
                al[0] = _mm512_dpbusd_epi32(al[0], xl, v0);
                ah[1] = _mm512_dpbusd_epi32(ah[1], xh, v1);
                al[1] = _mm512_dpbusd_epi32(al[1], xl, v1);
                ah[2] = _mm512_dpbusd_epi32(ah[2], xh, v2);
                al[2] = _mm512_dpbusd_epi32(al[2], xl, v2);
                ah[3] = _mm512_dpbusd_epi32(ah[3], xh, v3);
                al[3] = _mm512_dpbusd_epi32(al[3], xl, v3);
            }
        } else {
            for (int r = 0; r < rows; r++)
                for (int64_t k = 0; k < K64; k += 64) {
                    __m512i wv = _mm512_loadu_si512((const void *)(q + (n0 + r) * K + k));
                    ah[r] = _mm512_dpbusd_epi32(ah[r], _mm512_loadu_si512((const void *)(hi + k)), wv);
                    al[r] = _mm512_dpbusd_epi32(al[r], _mm512_loadu_si512((const void *)(lo + k)), wv);
                }
        }
        if (tail) {
            __m512i xh = _mm512_maskz_loadu_epi8(tail, (const void *)(hi + K64));
            __m512i xl = _mm512_maskz_loadu_epi8(tail, (const void *)(lo + K64));
            for (int r = 0; r < rows; r++) {
                __m512i wv = _mm512_maskz_loadu_epi8(tail, (const void *)(q + (n0 + r) * K + K64));
                ah[r] = _mm512_dpbusd_epi32(ah[r], xh, wv);
                al[r] = _mm512_dpbusd_epi32(al[r], xl, wv);
            }
        }
        for (int r = 0; r < rows; r++) {
            const int64_t n = n0 + r;
            const double offset = 128.0 * (double)rowsum[n];
            const double dot_hi = (double)_mm512_reduce_add_epi32(ah[r]) - offset;
            const double dot_lo = (double)_mm512_reduce_add_epi32(al[r]) - offset;
            float v = (float)((double)scales[n] * (double)sx * (dot_hi + dot_lo / 254.0));
            if (bias) v += bf16_to_f32(bias[n]);
            store(y, out_bf16, n, v);
        }
    }
    if (hi != stackbuf) free(hi);
}
