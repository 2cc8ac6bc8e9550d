/* tests/exp_check.c - raktn's softmax exp (exp_nonpositive, Part 2 of
 * raktn.c) against the C library's exp in double for the floats in
 * [-87, 0], on whatever machine runs it: tests/cross.sh builds it for every
 * target (x87's excess precision once made exp(-1) come out as 0.5 on
 * i686). Every STRIDE-th float (argument 1; default 1 = every one).
 * Exit 0 when the worst relative error is <= 1.2e-7. No test framework:
 * cross targets have no Check library. */
#define RAKTN_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"
#include "../raktn.c"

int main(int argc, char **argv) {
    uint32_t stride = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 1;
    if (stride == 0) stride = 1;
    double worst = 0;
    float at = 0;
    unsigned long count = 0;
    for (uint32_t b = 0x80000000u;; b += stride) {
        float x;
        memcpy(&x, &b, 4);
        if (x < -87.0f) break;
        double want = exp((double)x), e = fabs(exp_nonpositive(x) - want) / want;
        if (!(e <= worst)) worst = e, at = x;
        count++;
    }
    int ok = worst <= 1.2e-7 && exp_nonpositive(0.0f) == 1.0f && exp_nonpositive(-88.0f) == 0.0f;
    printf("exp_nonpositive: %lu floats in [-87, 0], worst relative error %.3g at %.9g: %s\n", count, worst, at,
           ok ? "ok" : "FAIL");
    return ok ? 0 : 1;
}
