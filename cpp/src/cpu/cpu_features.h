// Runtime CPU feature detection (CPUID + XGETBV) and the process-wide kernel ISA choice.
// The ISA is chosen once, at first use: the best the CPU and OS support, or the one named by the
// environment variable DPN_ISA (avx512bf16 | avx512 | avx2 | ref) when the machine has it. ISA-specific
// kernels are only ever called after this check says they are safe.
#pragma once

#include <string>

namespace dpn::cpu {

// Avx512Bf16: the avx512 level plus AVX512_BF16 (vdpbf16ps), which only the bfloat16 GEMMs use;
// every other kernel of that level is the avx512 one.
enum class Isa { Ref = 0, Avx2 = 1, Avx512 = 2, Avx512Bf16 = 3 };

struct Features {
  std::string vendor, brand;
  bool avx2 = false, fma = false, f16c = false;  // with OS support for YMM state
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;  // + ZMM state
  bool avx512_bf16 = false, avx512_vnni = false;
  // The avx2 kernels also use F16C (float16 embedding rows); every AVX2 CPU has it.
  bool has_avx2_fma() const { return avx2 && fma && f16c; }
  bool has_avx512() const { return avx512f && avx512bw && avx512vl && avx512dq && fma; }
  bool has_avx512_bf16() const { return has_avx512() && avx512_bf16; }
};

struct Selection {
  Isa isa = Isa::Ref;
  bool overridden = false;  // DPN_ISA was set (to anything)
  std::string override_value;
  std::string note;  // why the override was not honoured, or empty
};

const Features& features();    // detected once
const Selection& selection();  // decided once (reads DPN_ISA once)
inline Isa selected_isa() { return selection().isa; }

bool available(Isa isa);  // CPU + OS support this ISA (Ref always)
Isa best_available();
const char* isa_name(Isa isa);  // "ref" | "avx2" | "avx512" | "avx512bf16"
bool parse_isa(const std::string& s, Isa* out);

}  // namespace dpn::cpu
