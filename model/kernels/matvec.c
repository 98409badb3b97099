/* int8 weight-only matrix products for CPU decoding (AVX-512 VNNI).
 *
 * Why this file exists: decoding streams every weight once per token, so int8 weights should
 * halve the time of bfloat16 ones. torch's CPU kernel for them (torch._weight_int8pack_mm)
 * converts every weight to float32 before an FMA, supports only one scale per row and rounds
 * the activations to bfloat16; on the 2-core AMD EPYC we measure it is no faster than ATen's
 * bfloat16 product. Here the products are integer dot products (vpdpbusd: 64 weights per
 * instruction), with one scale per group of 64 inputs (half the quantization error of one
 * scale per row, which is what lets every block layer be int8 within the 2% bound).
 *
 * Activations are split into two int8 halves, x ~ sx * (hi + lo / 254), so each group's sum is
 * exact in integers; the split keeps ~15 bits of x (bfloat16 keeps 8), so the error is the
 * weights' quantization alone. Outputs are float32 or bfloat16 (round to nearest even).
 *
 * Built on first use by model/cpu_kernels.py (cc -O3 -fopenmp); the OpenMP runtime resolves to
 * the libgomp torch has already loaded, so the kernel shares torch's threads.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 4 /* output rows per block: four independent accumulator chains (model/cpu_kernels.py: ROWS) */
#ifndef GROUP
#define GROUP 64 /* inputs per scale: one 64-byte vector load (model/cpu_kernels.py passes -DGROUP) */
#endif

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

/* Split each activation row into two int8 halves: x ~ sx * (hi + lo / 254), stored +128 as
 * unsigned bytes (vpdpbusd multiplies unsigned by signed); columns K..Kp-1 hold x = 0. */
static void split_rows(const void *x, int x_bf16, int64_t M, int64_t K, int64_t Kp, uint8_t *hi, uint8_t *lo,
                       float *sx) {
#pragma omp parallel for schedule(static) if (M > 1)
    for (int64_t m = 0; m < M; m++) {
        const float *xf = x_bf16 ? NULL : (const float *)x + m * K;
        const uint16_t *xh = x_bf16 ? (const uint16_t *)x + m * K : NULL;
        float amax = 0.0f;
        for (int64_t k = 0; k < K; k++) amax = fmaxf(amax, fabsf(xf ? xf[k] : bf16_to_f32(xh[k])));
        const float scale = amax > 0.0f ? amax / 127.0f : 1.0f;
        uint8_t *h8 = hi + m * Kp, *l8 = lo + m * Kp;
        for (int64_t k = 0; k < K; k++) {
            const float v = (xf ? xf[k] : bf16_to_f32(xh[k])) / scale;
            const float h = nearbyintf(v);
            h8[k] = (uint8_t)((int)h + 128);
            l8[k] = (uint8_t)((int)nearbyintf((v - h) * 254.0f) + 128);
        }
        memset(h8 + K, 128, (size_t)(Kp - K));
        memset(l8 + K, 128, (size_t)(Kp - K));
        sx[m] = amax > 0.0f ? scale : 0.0f; /* an all-zero row gives exactly the bias */
    }
}

/* One group (GROUP inputs) of one weight row: its two integer dot products (hi and lo halves
 * of the activations), scaled by the group's scale, added to the row's float accumulators.
 * Accumulators are plain locals so they stay in registers. */
#if GROUP == 64
#define GROUP_STEP(fh, fl, wr, scale)                                                                \
    do {                                                                                             \
        const __m512i wa = _mm512_loadu_si512((const void *)(wr));                                  \
        const __m512 sc = _mm512_set1_ps(scale);                                                    \
        fh = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, xha, wa)), sc, fh);      \
        fl = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, xla, wa)), sc, fl);      \
    } while (0)
#define LOAD_X(k)                                                                                    \
    const __m512i xha = _mm512_loadu_si512((const void *)(h8 + (k)));                               \
    const __m512i xla = _mm512_loadu_si512((const void *)(l8 + (k)))
#else
#error "the kernel is written for groups of 64 inputs (one vector load)"
#endif

/* One block of ROWS output rows for one activation row. The block's weights are packed group
 * by group (group g of row r at w + (g * ROWS + r) * GROUP) so they are read strictly in
 * order: one sequential stream per thread, which the hardware prefetcher keeps ahead of. */
static inline void block_dots(const int8_t *w, const float *s, const uint8_t *h8, const uint8_t *l8, int64_t G,
                              float *out) {
    const __m512i zero = _mm512_setzero_si512();
    __m512 h0 = _mm512_setzero_ps(), h1 = h0, h2 = h0, h3 = h0, l0 = h0, l1 = h0, l2 = h0, l3 = h0;
    for (int64_t g = 0; g < G; g++) {
        LOAD_X(g * GROUP);
        const int8_t *wg = w + g * ROWS * GROUP;
        const float *sg = s + g * ROWS;
        GROUP_STEP(h0, l0, wg, sg[0]);
        GROUP_STEP(h1, l1, wg + GROUP, sg[1]);
        GROUP_STEP(h2, l2, wg + 2 * GROUP, sg[2]);
        GROUP_STEP(h3, l3, wg + 3 * GROUP, sg[3]);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / 254.0f);
    out[0] = _mm512_reduce_add_ps(_mm512_fmadd_ps(l0, inv, h0));
    out[1] = _mm512_reduce_add_ps(_mm512_fmadd_ps(l1, inv, h1));
    out[2] = _mm512_reduce_add_ps(_mm512_fmadd_ps(l2, inv, h2));
    out[3] = _mm512_reduce_add_ps(_mm512_fmadd_ps(l3, inv, h3));
}

/* Y (M, N) = X (M, K) W^T for int8 W with one float32 scale per row and group of GROUP inputs.
 * Layout (made by model/quantize.py): N is padded to a multiple of ROWS and K to a multiple of
 * GROUP (Kp) with zero weights; q is (Np / ROWS, G, ROWS, GROUP) and scales (Np / ROWS, G, ROWS)
 * with G = Kp / GROUP. corr[n] = sum_g scale[n,g] * sum(W[n, group g]) removes the +128 offset
 * of the activation bytes. Blocks of ROWS output rows are spread over the threads; a block's
 * weights (ROWS x Kp bytes) stay in cache while every activation row passes over them, so a
 * few rows (beams, a short prompt) cost little more than one. */
int gemm_int8(const int8_t *q, const float *scales, const float *corr, const void *x, int x_bf16,
               const uint16_t *bias, void *y, int out_bf16, int64_t M, int64_t N, int64_t K, int64_t Kp) {
    const int64_t G = Kp / GROUP;
    uint8_t *buf = (uint8_t *)malloc((size_t)(2 * M * Kp) + sizeof(float) * (size_t)M);
    if (!buf) return -1;
    uint8_t *hi = buf, *lo = buf + M * Kp;
    float *sx = (float *)(buf + 2 * M * Kp);
    split_rows(x, x_bf16, M, K, Kp, hi, lo, sx);
    const int64_t blocks = (N + ROWS - 1) / ROWS;

#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t n0 = blk * ROWS;
        const int rows = (int)(N - n0 < ROWS ? N - n0 : ROWS);
        for (int64_t m = 0; m < M; m++) {
            float dots[ROWS];
            block_dots(q + blk * G * ROWS * GROUP, scales + blk * G * ROWS, hi + m * Kp, lo + m * Kp, G, dots);
            for (int r = 0; r < rows; r++) {
                const int64_t n = n0 + r;
                const double dot = (double)dots[r] - 128.0 * (1.0 + 1.0 / 254.0) * (double)corr[n];
                float v = (float)((double)sx[m] * dot);
                if (bias) v += bf16_to_f32(bias[n]);
                store(y, out_bf16, m * N + n, v);
            }
        }
    }
    free(buf);
    return 0;
}

/* The bfloat16 weight (N, K) row-major that packed int8 weights stand for: long prompts multiply
 * it with torch's matrix-matrix kernels (oneDNN), where a product is compute-bound and the
 * weights' size no longer matters. Rounds to nearest even, like torch's conversion. */
void dequantize_int8(const int8_t *q, const float *scales, uint16_t *out, int64_t N, int64_t K, int64_t Kp) {
    const int64_t G = Kp / GROUP;
    const int64_t blocks = (N + ROWS - 1) / ROWS;
    const __m512i round_bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < blocks; blk++) {
        for (int r = 0; r < ROWS && blk * ROWS + r < N; r++) {
            uint16_t *row = out + (blk * ROWS + r) * K;
            for (int64_t g = 0; g < G; g++) {
                const int8_t *src = q + ((blk * G + g) * ROWS + r) * GROUP;
                const __m512 sc = _mm512_set1_ps(scales[(blk * G + g) * ROWS + r]);
                for (int64_t j = 0; j < GROUP; j += 16) {
                    const int64_t col = g * GROUP + j;
                    if (col >= K) break;
                    const __m128i b8 = _mm_loadu_si128((const __m128i *)(src + j));
                    const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b8)), sc);
                    __m512i bits = _mm512_castps_si512(v);
                    bits = _mm512_add_epi32(bits, _mm512_add_epi32(round_bias, _mm512_and_si512(_mm512_srli_epi32(bits, 16), one)));
                    const __m256i h = _mm512_cvtepi32_epi16(_mm512_srli_epi32(bits, 16));
                    const int64_t n = K - col < 16 ? K - col : 16;
                    if (n == 16)
                        _mm256_storeu_si256((__m256i *)(row + col), h);
                    else
                        _mm256_mask_storeu_epi16(row + col, (__mmask16)((1u << n) - 1), h);
                }
            }
        }
    }
}
