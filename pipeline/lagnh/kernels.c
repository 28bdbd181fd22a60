/* Fused elementwise passes of a LAGNH training step over the (n, n) batch matrices.
 *
 * Built and loaded by pipeline/lagnh/native.py (ctypes; no Python or torch headers). Each
 * function does in one or two passes what the eager torch path does in four to eleven; the
 * matrix products stay in torch. float32, row-major, contiguous. OpenMP over rows with a static
 * schedule and per-thread partial sums combined in thread order, so results are deterministic
 * for a given thread count. Compiled with -ffp-contract=off: the squared distances are the
 * same floats as the torch path's; exp differs from torch's in the last bit or two. And with
 * -fno-trapping-math: without it GCC 12 leaves the loops whose selects (a > b ? a : b) guard a
 * computation scalar on AVX2 CPUs ("control flow in loop"; AVX-512's masks hid this), and the
 * three loops marked "vectorized:" below ran about 4x slower (tests/test_lagnh_native.py checks
 * the compiler's vectorisation report for each mark).
 *
 *   graph_forward     Eq. (3)-(5) and D^-1/2 S D^-1/2 (or D^-1 S) from the Gram matrix
 *   graph_backward    the backward of graph_forward down to Q = dL/dsq + (dL/dsq)^T
 *   cos_recon         Eq. (9)'s residual, loss sum and masked gradient from cos(Z, Z)
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#define THREAD_ID omp_get_thread_num()
#else
#define THREAD_ID 0
#endif

#define TILE 64

/* e^x for x in [-87, 0] (Cephes' expf polynomial, range reduction by ln 2); vectorisable. */
static inline float exp_le0(float x) {
    float t = x * 1.44269504088896341f + 12582912.0f; /* round(x / ln 2) in the mantissa */
    float nf = t - 12582912.0f;
    float r = x - nf * 0.693359375f;
    r = r - nf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    union { int32_t i; float f; } two_n = {((int32_t)nf + 127) << 23};
    return p * two_n.f;
}

/* In: g = X X^T (n x n, overwritten with S^v), norms_i = |x_i|^2, s_a (n x n or NULL).
 * Out: s_v (in g), s = s_a + mu S^v (NULL s_a: s is not written, S = S^v), s_norm, inv (n).
 * sq_ij = max((-2 g_ij + norms_i) + norms_j, 0), sq_ii = 0; S^v = e^(scale sq), values at or
 * below `floor` set to 0 (no subnormal floats downstream); inv = D^-1/2 (sym) or D^-1 (row),
 * 0 for degree 0. */
void graph_forward(int n, float *g, const float *norms, const float *s_a, float mu, float scale,
                   float floor_, float *s, float *s_norm, float *inv, int row_mode,
                   int nthreads) {
    const float *sm = s_a ? s : g;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int i = 0; i < n; i++) {
        float *gi = g + (size_t)i * n;
        const float ni = norms[i];
        float deg = 0.0f;
#pragma omp simd
        for (int j = 0; j < n; j++) { /* vectorized: graph kernel */
            float sq = gi[j] * -2.0f + ni + norms[j];
            sq = sq > 0.0f ? sq : 0.0f;
            float arg = sq * scale;
            float v = exp_le0(arg > -87.0f ? arg : -87.0f);
            gi[j] = v > floor_ ? v : 0.0f;
        }
        gi[i] = 1.0f; /* sq_ii = 0 */
        if (s_a) {
            float *si = s + (size_t)i * n;
            const float *ai = s_a + (size_t)i * n;
#pragma omp simd reduction(+ : deg)
            for (int j = 0; j < n; j++) {
                float sij = ai[j] + mu * gi[j];
                si[j] = sij;
                deg += sij;
            }
        } else {
#pragma omp simd reduction(+ : deg)
            for (int j = 0; j < n; j++) deg += gi[j];
        }
        inv[i] = deg > 0.0f ? (row_mode ? 1.0f / deg : 1.0f / sqrtf(deg)) : 0.0f;
    }
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int i = 0; i < n; i++) {
        const float *si = sm + (size_t)i * n;
        float *oi = s_norm + (size_t)i * n;
        const float a = inv[i];
        if (row_mode) {
#pragma omp simd
            for (int j = 0; j < n; j++) oi[j] = si[j] * a;
        } else {
#pragma omp simd
            for (int j = 0; j < n; j++) oi[j] = si[j] * a * inv[j];
        }
    }
}

/* Backward of graph_forward. In: g = dL/dS~ (n x n), inv, s (S), s_v (S^v). Out: q (n x n,
 * may alias nothing else) = D + D^T with D = (t + c 1^T) o S^v, zero diagonal, where
 * t = g o dS~/dS (a_i a_j or iota_i) and c_i = -1/2 a_i^2 (sum_j P_ij + sum_j P_ji) (sym) or
 * -iota_i sum_j P_ij (row), P = t o S; qsum_i = sum_j q_ij. work: nthreads * n floats.
 * The caller scales q by dS/dsq (see _FusedGaussianGraph). */
void graph_backward(int n, const float *g, const float *inv, const float *s, const float *s_v,
                    float *q, float *qsum, float *work, int row_mode, int nthreads) {
    float *c = qsum; /* c lives in qsum until the last pass */
    memset(work, 0, sizeof(float) * (size_t)nthreads * n);
    /* pass 1: t into q, row sums of P into c, column sums of P into work (per thread) */
#pragma omp parallel num_threads(nthreads)
    {
        float *col = work + (size_t)THREAD_ID * n;
#pragma omp for schedule(static)
        for (int i = 0; i < n; i++) {
            const float *gi = g + (size_t)i * n;
            const float *si = s + (size_t)i * n;
            float *ti = q + (size_t)i * n;
            const float a = inv[i];
            float rs = 0.0f;
            if (row_mode) {
#pragma omp simd reduction(+ : rs)
                for (int j = 0; j < n; j++) {
                    float t = gi[j] * a;
                    ti[j] = t;
                    rs += t * si[j];
                }
                c[i] = -rs * a;
            } else {
#pragma omp simd reduction(+ : rs)
                for (int j = 0; j < n; j++) {
                    float t = gi[j] * a * inv[j];
                    float p = t * si[j];
                    ti[j] = t;
                    rs += p;
                    col[j] += p;
                }
                c[i] = rs;
            }
        }
    }
    if (!row_mode) {
        for (int i = 0; i < n; i++) {
            float cs = 0.0f;
            for (int k = 0; k < nthreads; k++) cs += work[(size_t)k * n + i];
            c[i] = (c[i] + cs) * (inv[i] * inv[i]) * -0.5f;
        }
    }
    /* pass 2: q_ij = q_ji = (t_ij + c_i) S^v_ij + (t_ji + c_j) S^v_ji over tile pairs I <= J */
    const int tiles = (n + TILE - 1) / TILE;
    memset(work, 0, sizeof(float) * (size_t)nthreads * n);
#pragma omp parallel num_threads(nthreads)
    {
        float *rsum = work + (size_t)THREAD_ID * n;
        float a_tile[TILE][TILE];
#pragma omp for schedule(static, 1)
        for (int bi = 0; bi < tiles; bi++) {
            const int i0 = bi * TILE, i1 = i0 + TILE < n ? i0 + TILE : n;
            for (int bj = bi; bj < tiles; bj++) {
                const int j0 = bj * TILE, j1 = j0 + TILE < n ? j0 + TILE : n;
                /* D of tile (J, I), transposed into a_tile[i - i0][j - j0] */
                for (int j = j0; j < j1; j++) {
                    const float *tj = q + (size_t)j * n;
                    const float *vj = s_v + (size_t)j * n;
                    const float cj = c[j];
                    for (int i = i0; i < i1; i++) a_tile[i - i0][j - j0] = (tj[i] + cj) * vj[i];
                }
                for (int i = i0; i < i1; i++) {
                    float *ti = q + (size_t)i * n;
                    const float *vi = s_v + (size_t)i * n;
                    const float ci = c[i];
                    const float *at = a_tile[i - i0];
                    float rs = 0.0f;
                    if (bi == bj) {
                        /* row i of this tile is still t: both D_ij and D_ji (a_tile) known */
                        for (int j = j0; j < j1; j++) {
                            float v = j == i ? 0.0f : (ti[j] + ci) * vi[j] + at[j - j0];
                            ti[j] = v;
                            rs += v;
                        }
                    } else {
#pragma omp simd reduction(+ : rs)
                        for (int j = j0; j < j1; j++) {
                            float v = (ti[j] + ci) * vi[j] + at[j - j0];
                            ti[j] = v;
                            rs += v;
                            rsum[j] += v;
                        }
                    }
                    rsum[i] += rs;
                }
                if (bi != bj) {
                    /* mirror: q_ji = q_ij */
                    for (int j = j0; j < j1; j++) {
                        float *tj = q + (size_t)j * n;
                        for (int i = i0; i < i1; i++) tj[i] = q[(size_t)i * n + j];
                    }
                }
            }
        }
    }
    for (int i = 0; i < n; i++) {
        float acc = 0.0f;
        for (int k = 0; k < nthreads; k++) acc += work[(size_t)k * n + i];
        qsum[i] = acc;
    }
}

/* Eq. (9) residual from r = Zn Zn^T (n x n, overwritten): r <- max(r, 0); d = r - k T;
 * returns sum d^2 (double); r <- d where r > 0, else 0 (the gradient up to 2/n^2). */
double cos_recon(int n, float *r, const float *target, float k, int nthreads) {
    double *rows = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (!rows) return NAN;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int i = 0; i < n; i++) {
        float *ri = r + (size_t)i * n;
        const float *ti = target + (size_t)i * n;
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int j = 0; j < n; j++) { /* vectorized: Eq. 9 residual */
            float v = ri[j] > 0.0f ? ri[j] : 0.0f;
            float d = v - k * ti[j];
            acc += d * d;
            ri[j] = v > 0.0f ? d : 0.0f;
        }
        rows[i] = acc;
    }
    double total = 0.0;
    for (int i = 0; i < n; i++) total += rows[i]; /* fixed order: deterministic */
    free(rows);
    return total;
}

/* Bandwidth rule of pipeline.lagnh.graph.sigma_from_squared_distances (same bracketing, grid
 * and interpolation) on sq (rows x n, row stride n, clamped at 0, own node at distance 0).
 * Returns sigma, or 1 when no distance is positive. The grid points of a stage run in parallel,
 * each summed by one thread in a fixed order: the result does not depend on nthreads. */
float sigma_rule(int rows, int n, const float *sq, float target, int stages, int grid,
                 int nthreads) {
    float pos = INFINITY, mx = 0.0f;
    for (int i = 0; i < rows; i++) {
        const float *si = sq + (size_t)i * n;
#pragma omp simd reduction(min : pos) reduction(max : mx)
        for (int j = 0; j < n; j++) {
            float v = si[j];
            float vp = v > 0.0f ? v : INFINITY;
            pos = vp < pos ? vp : pos;
            mx = v > mx ? v : mx;
        }
    }
    if (!(pos < INFINITY)) return 1.0f;
    float lo = 0.5f * logf(pos) - 3.0f;
    float hi = 0.5f * logf(mx > 1e-30f ? mx : 1e-30f) + 3.0f;
    float ls[64], deg[64], d_lo = 0.0f, d_hi = 0.0f;
    if (grid > 64) grid = 64;
    for (int stage = 0; stage < stages; stage++) {
        for (int k = 0; k < grid; k++) ls[k] = lo + (hi - lo) * ((float)k / (float)(grid - 1));
#pragma omp parallel for schedule(static) num_threads(nthreads)
        for (int k = 0; k < grid; k++) {
            const float coef = -0.5f * expf(-2.0f * ls[k]);
            float total = 0.0f;
            for (int i = 0; i < rows; i++) {
                const float *si = sq + (size_t)i * n;
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (int j = 0; j < n; j++) { /* vectorized: sigma grid */
                    float arg = si[j] * coef;
                    acc += exp_le0(arg > -87.0f ? arg : -87.0f);
                }
                total += acc;
            }
            deg[k] = total / (float)rows - 1.0f;
        }
        int below = 0;
        for (int k = 0; k < grid; k++) below += deg[k] <= target;
        below = below < 1 ? 1 : (below > grid - 1 ? grid - 1 : below);
        lo = ls[below - 1];
        hi = ls[below];
        d_lo = deg[below - 1];
        d_hi = deg[below];
    }
    float span = d_hi - d_lo;
    float t = (target - d_lo) / (span > 1e-30f ? span : 1e-30f);
    t = t < 0.0f ? 0.0f : (t > 1.0f ? 1.0f : t);
    return expf(lo + t * (hi - lo));
}
