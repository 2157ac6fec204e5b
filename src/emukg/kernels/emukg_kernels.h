/* Constants shared by every emukg C kernel and by their Python loader (emukg.kernels, which must agree with this
 * file: tests/test_kernels.py parses it and compares).  The compiled-kernel cache key hashes this header too, so
 * changing a code here recompiles every kernel.
 */
#ifndef EMUKG_KERNELS_H
#define EMUKG_KERNELS_H

/* Metric codes (emukg.kernels.Metric): one numbering for training (candidates.c) and evaluation (score_all.c).
 *   L1          sum_i |q_i - x_i|                                   (TransE; score = bias - distance)
 *   DOT         sum_i  q_i * x_i                                    (DistMult, ComplEx; score = bias + dot)
 *   COMPLEX_L1  sum_k sqrt((q_re,k - x_re,k)^2 + (q_im,k - x_im,k)^2)  over complex coordinates k, a row holding the
 *               real parts in its first half and the imaginary parts in its second (RotatE; score = bias - distance) */
#define EMUKG_METRIC_L1 0
#define EMUKG_METRIC_DOT 1
#define EMUKG_METRIC_COMPLEX_L1 2

/* Training-only metrics (candidates.c's emukg_cand_ext_*; score_all.c does not know them, and emukg.kernels
 * refuses them there).  x' is the (mutated) candidate row; see candidates.c for the exact formulas.
 *   SIN_L1      sum_i |sin(q_i - x_i / scale)|                          (pRotatE; score = -(weighted) sum)
 *   TRANSD_L1   sum_i |q_i - y_i|, y = normalize(e + (e.e_p) a), row [e, e_p], a = per-query vector (TransD)
 *   HAKE        wm ||qm - a o xm||_2 + wp sum_i |sin(qp_i - xp_i / scale)|, row [xm, xp]           (HAKE) */
#define EMUKG_METRIC_SIN_L1 3
#define EMUKG_METRIC_TRANSD_L1 4
#define EMUKG_METRIC_HAKE 5

/* Candidate mutation codes of the training kernel (emukg.kernels.Mut). */
#define EMUKG_MUT_NONE 0
#define EMUKG_MUT_EMU 1
#define EMUKG_MUT_MIXUP 2

/* Status codes returned by every kernel that allocates (emukg.kernels turns EMUKG_ENOMEM into MemoryError). */
#define EMUKG_OK 0
#define EMUKG_ENOMEM (-1)

#endif
