// Runtime CPU feature detection (CPUID + XGETBV) and the process-wide kernel ISA choice.
// The ISA is chosen once, at first use: the best the CPU and OS support, or the one named by the
// environment variable DPN_ISA (avx512amx | avx512bf16 | avx512 | avx2 | ref) when the machine has it.
// ISA-specific kernels are only ever called after this check says they are safe.
#pragma once

#include <cstdint>
#include <string>

namespace dpn::cpu {

// Avx512Bf16: the avx512 level plus AVX512_BF16 (vdpbf16ps), which only the bfloat16 GEMMs use;
// every other kernel of that level is the avx512 one. Avx512Amx: avx512bf16 plus AMX-BF16 tiles for
// the bfloat16 GEMMs (usable only once the OS grants the process the tile data: amx below).
enum class Isa { Ref = 0, Avx2 = 1, Avx512 = 2, Avx512Bf16 = 3, Avx512Amx = 4 };

struct Features {
  std::string vendor, brand;
  bool avx2 = false, fma = false, f16c = false;  // with OS support for YMM state
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;  // + ZMM state
  bool avx512_bf16 = false, avx512_vnni = false;
  // AMX-TILE + AMX-BF16 with the tile state enabled in XCR0 and (Linux) the permission for the
  // tile data granted to this process (arch_prctl ARCH_REQ_XCOMP_PERM, asked once at detection,
  // unless DPN_AMX=0).
  bool amx_bf16 = false;
  bool amx_int8 = false;  // AMX-INT8 tiles, likewise (the int8 GEMMs of the avx512amx level)
  // Per-core data caches from CPUID (leaf 4 on Intel, 0x8000001D on AMD); 0 when not reported
  // (the GEMM block sizes then fall back to defaults: kernels/blocking.h).
  int64_t l1d_bytes = 0, l2_bytes = 0;
  // The avx2 kernels also use F16C (float16 embedding rows); every AVX2 CPU has it.
  bool has_avx2_fma() const { return avx2 && fma && f16c; }
  bool has_avx512() const { return avx512f && avx512bw && avx512vl && avx512dq && fma; }
  bool has_avx512_bf16() const { return has_avx512() && avx512_bf16; }
  bool has_avx512_amx() const { return has_avx512_bf16() && amx_bf16; }
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
