#include "mid_gla.cu"
#define K_STATE mid_gla_chunk_state_bf16
#define K_STATE32 mid_gla_chunk_state_f32
#define K_SCAN mid_gla_state_scan_f32
#define K_OUT mid_gla_chunk_output_bf16
#define K_OUT32 mid_gla_chunk_output_f32
#define LAUNCH launch_mid
#include "launcher.inc"
