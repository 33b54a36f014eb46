#include "new_gla.cu"
#define K_STATE gla_chunk_state_bf16
#define K_STATE32 gla_chunk_state_f32
#define K_SCAN gla_state_scan_f32
#define K_OUT gla_chunk_output_bf16
#define K_OUT32 gla_chunk_output_f32
#define OUT_APAD 36
#define NEW_STATE 1
#define LAUNCH launch_new
#include "launcher.inc"
