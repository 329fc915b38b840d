// Dispatch of field_attention (field_attn.h) and field_mix (field_mix.h) to the selected ISA's
// version, and the softmax step every field_attention version shares.
#include <cmath>

#include "cpu/cpu_features.h"
#include "kernels/field_attn.h"
#include "kernels/field_mix.h"

namespace dpn::kernels {

void field_attention_weights(float* s, int64_t t1, int64_t t2) {
  for (int64_t i = 0; i < t1; ++i) {
    float mx = s[i];
    for (int64_t j = 1; j < t2; ++j) mx = std::fmax(mx, s[j * t1 + i]);
    float sum = 0.0f;
    for (int64_t j = 0; j < t2; ++j) {
      const float e = std::exp(s[j * t1 + i] - mx);
      s[j * t1 + i] = e;
      sum += e;
    }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < t2; ++j) s[j * t1 + i] *= inv;
  }
}

void field_attention(cpu::Isa isa, float* s, const float* z, int64_t rows, int64_t t1, int64_t t2,
                     int64_t n, float* out) {
#if defined(DPN_HAVE_X86_KERNELS)
  switch (isa) {
    case cpu::Isa::Avx512: return field_attention_avx512(s, z, rows, t1, t2, n, out);
    case cpu::Isa::Avx2: return field_attention_avx2(s, z, rows, t1, t2, n, out);
    default: break;
  }
#else
  (void)isa;
#endif
  field_attention_ref(s, z, rows, t1, t2, n, out);
}

void field_attention(float* s, const float* z, int64_t rows, int64_t t1, int64_t t2, int64_t n,
                     float* out) {
  field_attention(cpu::selected_isa(), s, z, rows, t1, t2, n, out);
}

void field_mix(cpu::Isa isa, const float* W, const float* T, int64_t rows, int64_t t, int64_t c,
               const float* bias, bool accumulate, float* y) {
#if defined(DPN_HAVE_X86_KERNELS)
  switch (isa) {
    case cpu::Isa::Avx512: return field_mix_avx512(W, T, rows, t, c, bias, accumulate, y);
    case cpu::Isa::Avx2: return field_mix_avx2(W, T, rows, t, c, bias, accumulate, y);
    default: break;
  }
#else
  (void)isa;
#endif
  field_mix_ref(W, T, rows, t, c, bias, accumulate, y);
}

void field_mix(const float* W, const float* T, int64_t rows, int64_t t, int64_t c,
               const float* bias, bool accumulate, float* y) {
  field_mix(cpu::selected_isa(), W, T, rows, t, c, bias, accumulate, y);
}

}  // namespace dpn::kernels
