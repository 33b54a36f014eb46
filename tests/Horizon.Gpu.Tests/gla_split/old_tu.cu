#include "old_gla.cu"
#define K_STATE old_gla_chunk_state_bf16
#define K_STATE32 old_gla_chunk_state_f32
#define K_SCAN old_gla_state_scan_f32
#define K_OUT old_gla_chunk_output_bf16
#define K_OUT32 old_gla_chunk_output_f32
#define OUT_APAD 33
#define NEW_STATE 1
#define LAUNCH launch_old
#include "launcher.inc"
