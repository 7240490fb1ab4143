/* unet.h - the U-Net velocity field: a fixed program of image layers
 * (lib/conv.h) executed forward and, in reverse, backward. Private to the library.
 *
 * The network is compiled once per model into a list of tensors (shapes per image) and
 * operations; a forward pass over n images stores every tensor for the batch in one
 * arena, and the backward pass accumulates gradients into a second arena of the same
 * layout (every tensor may feed several operations: skips, residuals). Architecture:
 * doc/unet.md. */
#ifndef STOCHFLOW_UNET_H
#define STOCHFLOW_UNET_H

#include <stddef.h>
#include <stdint.h>

typedef struct stochflow__unet stochflow__unet;

/* Most positions (h * w) of a level with attention: 64x64 (doc/unet.md, Limits). */
#define STOCHFLOW__UNET_MAX_ATTN 4096

/* U-Net settings as stored in a configuration. */
typedef struct {
    size_t channels, height, width; /* image shape; channels*height*width = dim */
    size_t base, n_levels, blocks, groups;
    size_t mult[6];                 /* STOCHFLOW_UNET_MAX_LEVELS */
    uint32_t attn_mask;
} stochflow__unet_cfg;

/* 0 or INVALID with a message naming the bad value. */
int stochflow__unet_validate(const stochflow__unet_cfg *c, size_t dim);
/* Compile the network; *n_params receives the parameter count. NOMEM/INVALID. */
int stochflow__unet_build(stochflow__unet **out, size_t *n_params, const stochflow__unet_cfg *c);
void stochflow__unet_free(stochflow__unet *u);
/* Initial weights into p [n_params] from (seed, INIT stream). */
void stochflow__unet_init(const stochflow__unet *u, float *p, uint64_t seed);

/* Workspace floats for a batch of n images: forward only, or forward + backward, for
 * passes run with nthreads threads. Returns -1 on overflow. */
int stochflow__unet_ws_floats(size_t *out, const stochflow__unet *u, size_t n, int backward,
                              int nthreads);
/* Forward pass of n images x [n x dim] at times t [n]; the output velocity is returned
 * (it lives in ws and stays valid until the next call with the same ws). */
const float *stochflow__unet_forward(const stochflow__unet *u, const float *p, const float *x,
                                     const float *t, size_t n, float *ws, int nthreads);
/* Backward from dout [n x dim] after a forward with the same (p, x, t, n, ws):
 * grads != NULL: accumulate parameter gradients; dx != NULL: write the input gradient
 * [n x dim] (the vector-Jacobian product dout^T dv/dx). */
void stochflow__unet_backward(const stochflow__unet *u, const float *p, const float *dout,
                              size_t n, float *ws, float *grads, float *dx, int nthreads);

#endif
