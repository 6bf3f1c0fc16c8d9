/* FaceEdit's CPU rasteriser kernels, each the exact twin of a PyTorch path in render/:
 *
 * faceedit_coverage (rasterize._coverage): the z-buffer, one triangle after another. The same
 *   algorithm and float32 steps, in the same order, as `_face_table`, `_row_runs` and
 *   `_scatter_runs` (whose docstrings explain it): each triangle is cut into the pixel rows of its
 *   bounding box, each row into the run of pixel centres between where its edges cross the row
 *   (widened by `slack`), the run's two ends settled by the exact edge functions; every pixel of
 *   the run takes the minimum of its key and (depth bits << 32 | face id).
 * faceedit_covered (rasterize._covered_faces): the covered pixels of a z-buffer and their faces.
 * faceedit_resolve_planes (preview._resolve_planes): colours from screen-space planes at the covered
 *   samples, clamped to [0, 1], averaged over each pixel's samples into straight-alpha RGBA.
 *
 * Built with -ffp-contract=off: a multiply-add is fused exactly where the PyTorch path's
 * torch.addcmul is (MADD), and then only if this torch's CPU kernels fuse it (FACEEDIT_FUSED, found
 * by native.py); sums run in the PyTorch path's order. So both paths give the same bits.
 *
 * Built and loaded by render/native.py (the system C compiler, at first use); no Python headers.
 */
#include <stdint.h>
#include <string.h>
#include <math.h>

#if FACEEDIT_FUSED
#define MADD(a, b, c) fmaf(a, b, c) /* a * b + c, rounded once */
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

/* depth -> the top word of a z-buffer key: a signed integer ordered as the floats are */
static int64_t sortable(float depth)
{
    int32_t bits;
    memcpy(&bits, &depth, sizeof bits);
    return (int64_t)(bits < 0 ? bits ^ 0x7FFFFFFF : bits);
}

/* comparisons, not fminf/fmaxf (library calls for their NaN rules): no NaN reaches them */
static float minf(float a, float b) { return b < a ? b : a; }
static float maxf(float a, float b) { return b > a ? b : a; }
static float minf3(float a, float b, float c) { return minf(minf(a, b), c); }
static float maxf3(float a, float b, float c) { return maxf(maxf(a, b), c); }
static float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* tri [4][3][n] float32: pixel x, pixel y, depth z/w, clip w of the corners of n triangles, F of
 * them per image (triangle g is face g % F of image g / F); keys [n / F * H * W] int64, filled by
 * the caller with the empty key; cull: draw only triangles clockwise in y-down pixels. */
void faceedit_coverage(const float *tri, int64_t n, int64_t F, int64_t H, int64_t W, int32_t cull, float slack,
                       int64_t *keys)
{
    const float *X = tri, *Y = tri + 3 * n, *Z = tri + 6 * n, *Wc = tri + 9 * n;
    for (int64_t g = 0; g < n; g++) {
        const float x[3] = {X[g], X[n + g], X[2 * n + g]};
        const float y[3] = {Y[g], Y[n + g], Y[2 * n + g]};
        const float area = (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0]);
        if (!(Wc[g] > 0 && Wc[n + g] > 0 && Wc[2 * n + g] > 0) || !(fabsf(area) > 1e-12f))
            continue;
        if (cull && !(area < 0))
            continue;
        const float x0 = clampf(ceilf(minf3(x[0], x[1], x[2]) - 0.5f), 0, (float)W);
        const float x1 = clampf(floorf(maxf3(x[0], x[1], x[2]) - 0.5f), -1, (float)(W - 1));
        const int64_t y0 = (int64_t)clampf(ceilf(minf3(y[0], y[1], y[2]) - 0.5f), 0, (float)H);
        const int64_t y1 = (int64_t)clampf(floorf(maxf3(y[0], y[1], y[2]) - 0.5f), -1, (float)(H - 1));
        if (x1 < x0)
            continue;
        /* edge i runs from corner j = i+1 to k = i+2; its edge function, non-negative inside, is
         * sdx (sy - yj) + step (sx - xj) */
        const float s = area > 0 ? 1.0f : -1.0f, inv = 1.0f / fabsf(area);
        float xj[3], yj[3], sdx[3], step[3], slope[3], zs[3];
        for (int i = 0; i < 3; i++) {
            const int j = (i + 1) % 3, k = (i + 2) % 3;
            const float dx = x[k] - x[j], dy = y[k] - y[j];
            xj[i] = x[j], yj[i] = y[j];
            sdx[i] = dx * s, step[i] = -dy * s, slope[i] = dx / dy;
            zs[i] = Z[i * n + g] * inv;
        }
        const float dstep = step[0] * zs[0] + step[1] * zs[1] + step[2] * zs[2]; /* depth per pixel in x */
        const int64_t face = g % F, image_base = g / F * H * W;
        for (int64_t row = y0; row <= y1; row++) {
            float t[3], lo = -INFINITY, hi = INFINITY;
            for (int i = 0; i < 3; i++) {
                t[i] = ((float)row + 0.5f) - yj[i];
                const float root = MADD(slope[i], t[i], xj[i]);
                if (step[i] > 0)
                    lo = maxf(lo, root);
                else if (step[i] < 0)
                    hi = minf(hi, root);
            }
            float c0 = maxf(ceilf(lo - 0.5f - slack), x0);
            const float c1 = minf(floorf(hi - 0.5f + slack), x1);
            float e[3];
            for (int i = 0; i < 3; i++)
                e[i] = MADD(step[i], (c0 + 0.5f) - xj[i], sdx[i] * t[i]);
            const float first_out = minf3(e[0], e[1], e[2]) < 0 ? 1.0f : 0.0f;
            const float last_out = minf3(MADD(step[0], c1 - c0, e[0]), MADD(step[1], c1 - c0, e[1]),
                                         MADD(step[2], c1 - c0, e[2])) < 0 ? 1.0f : 0.0f;
            const float depth = MADD(dstep, first_out, e[0] * zs[0] + e[1] * zs[1] + e[2] * zs[2]);
            c0 = c0 + first_out;
            const float len = c1 - last_out - c0 + 1;
            if (!(len > 0)) /* an empty run; past here x0 <= c0 <= c1 <= x1: every write is in the row */
                continue;
            int64_t *run = keys + image_base + row * W + (int64_t)c0;
            for (int64_t k = 0; k < (int64_t)len; k++) {
                const float d = MADD(dstep, (float)k, depth);
                if (d < -1)
                    continue;
                const int64_t key = (int64_t)((uint64_t)sortable(d) << 32) | face;
                if (key < run[k])
                    run[k] = key;
            }
        }
    }
}

/* keys [n] of a z-buffer -> the covered pixels hit [P] (ascending) and their face ids face [P] (each
 * key's low word); with hit NULL only counted. Returns P. */
int64_t faceedit_covered(const int64_t *keys, int64_t n, int64_t no_hit, int64_t *hit, int64_t *face)
{
    int64_t p = 0;
    for (int64_t i = 0; i < n; i++) {
        if (keys[i] == no_hit)
            continue;
        if (hit) {
            hit[p] = i;
            face[p] = (int32_t)(uint32_t)((uint64_t)keys[i] & 0xFFFFFFFFu);
        }
        p++;
    }
    return p;
}

/* The covered samples hit [P] (ascending, flat in an image Ws samples wide) with their faces
 * face [P], and colour planes [9][F] (rows a, b, c of each channel's value a x + b y + c over sample
 * coordinates) -> out [H*W][4], s x s samples a pixel: the mean clamped colour of each pixel's
 * covered samples and the covered share as alpha; 0 where none. */
void faceedit_resolve_planes(const int64_t *hit, const int64_t *face, int64_t P, const float *planes, int64_t F,
                             int64_t Ws, int64_t s, int64_t H, int64_t W, float *out)
{
    memset(out, 0, (size_t)(H * W * 4) * sizeof *out);
    for (int64_t i = 0; i < P; i++) {
        const int64_t row = hit[i] / Ws, col = hit[i] - row * Ws, f = face[i];
        const float x = (float)col + 0.5f, y = (float)row + 0.5f;
        float *pixel = out + ((row / s) * W + col / s) * 4;
        for (int c = 0; c < 3; c++) {
            const float v = MADD(planes[(3 + c) * F + f], y, MADD(planes[c * F + f], x, planes[(6 + c) * F + f]));
            pixel[c] += v < 0 ? 0.0f : (v > 1 ? 1.0f : v);
        }
        pixel[3] += 1.0f;
    }
    for (int64_t p = 0; p < H * W; p++) {
        float *pixel = out + p * 4;
        const float n = pixel[3] < 1 ? 1.0f : pixel[3];
        for (int c = 0; c < 3; c++)
            pixel[c] /= n;
        pixel[3] /= (float)(s * s);
    }
}
