#include "abl2_gla.cu"
#define K_STATE abl2_gla_chunk_state_bf16
#define K_STATE32 abl2_gla_chunk_state_f32
#define K_SCAN abl2_gla_state_scan_f32
#define K_OUT abl2_gla_chunk_output_bf16
#define K_OUT32 abl2_gla_chunk_output_f32
#define LAUNCH launch_abl2
#define NEW_STATE 1
#include "launcher.inc"
