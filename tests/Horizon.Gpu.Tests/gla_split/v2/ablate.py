# Makes ablated copies of new_gla.cu for the harness: abl1 = the A phase's inner products removed; abl2 = the output
# phase removed (o written as zeros after A is built). Kernels renamed abl1_/abl2_.
import re, sys
src = open(sys.argv[1]).read()
names = r'\bgla_(chunk_state_f32|chunk_state_bf16|state_scan_f32|chunk_output_f32|chunk_output_bf16|recurrent_decode_f32|log_gates_f32|norm_gate_f32_bf16|short_conv_silu_f32)\b'
m1 = "for (int ii = 0; ii < BK; ii++)\n        {\n            // below the diagonal"
assert src.count(m1) == 1
a1 = src.replace(m1, "for (int ii = 0; ii < 0; ii++)\n        {\n            // below the diagonal")
m2 = "    if constexpr (std::is_same<T, bf16_t>::value)\n    {\n        // bf16: o = qd S_c"
assert src.count(m2) == 1
a2 = src.replace(m2, "    cp_async_wait<0>();\n    for (int e = threadIdx.x; e < len * (j_end - j_begin); e += THREADS) o_base[(size_t)(e / (j_end - j_begin)) * o_stride + j_begin + e % (j_end - j_begin)] = from_float<T>(a_s[threadIdx.x] + qd[threadIdx.x]);\n    if (true) return;\n" + m2)
open('abl1_gla.cu', 'w').write(re.sub(names, r'abl1_gla_\1', a1))
open('abl2_gla.cu', 'w').write(re.sub(names, r'abl2_gla_\1', a2))
