#include "abl1_gla.cu"
#define K_STATE abl1_gla_chunk_state_bf16
#define K_STATE32 abl1_gla_chunk_state_f32
#define K_SCAN abl1_gla_state_scan_f32
#define K_OUT abl1_gla_chunk_output_bf16
#define K_OUT32 abl1_gla_chunk_output_f32
#define LAUNCH launch_abl1
#define NEW_STATE 1
#include "launcher.inc"
