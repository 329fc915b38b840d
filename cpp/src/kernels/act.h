// Elementwise activations (docs/format.md §5 `act`), shared by every op's epilogue.
#pragma once

#include <cmath>
#include <cstdint>

namespace dpn::cpu {
enum class Isa;  // cpu/cpu_features.h
}

namespace dpn::kernels {

enum class Act { Identity, Relu, Sigmoid, Tanh };

// Numerically stable logistic: never overflows exp().
inline float sigmoid(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + std::exp(-x));
  const float e = std::exp(x);
  return e / (1.0f + e);
}

// max(0, x) as torch has it: NaN stays NaN (an overflow upstream must not turn into a plausible
// score), -0 becomes +0. The vector versions compute the same bits as max(0, x) + 0 (vmaxps returns
// its second operand when either is NaN; the + 0 turns -0 into +0).
inline float relu(float x) { return (0.0f > x ? 0.0f : x) + 0.0f; }

inline float apply(Act a, float x) {
  switch (a) {
    case Act::Identity: return x;
    case Act::Relu: return relu(x);
    case Act::Sigmoid: return sigmoid(x);
    case Act::Tanh: return std::tanh(x);
  }
  return x;
}

// act_inplace runs with the process's kernel ISA (cpu::selected_isa(), the one the GEMMs use); the
// overload taking an Isa first runs that ISA's version (it must be cpu::available()). The
// vector versions match these scalar ones to a few ulp (relu exactly; NaN in, NaN out for sigmoid
// and tanh and relu in every version).

// x[i] = act(x[i]) for n contiguous floats (act_ref.cpp, act_avx2.cpp, act_avx512.cpp).
void act_inplace(float* x, int64_t n, Act a);
void act_inplace(cpu::Isa isa, float* x, int64_t n, Act a);

}  // namespace dpn::kernels
