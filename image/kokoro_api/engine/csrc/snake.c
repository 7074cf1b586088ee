/* Snake activation as one ONNX Runtime custom op: y = x + sin(alpha * x)^2 / alpha.
 *
 * Kokoro's generator applies it 48 times (resblocks / noise_res); exported, it is five element-wise nodes
 * (Mul, Sin, Pow, Mul(Reciprocal(alpha)), Add), five passes over a large tensor, and ORT's Sin runs on
 * one thread. Here: one pass, split over channels with the session's intra-op thread pool.
 *
 * Domain "kokoro_api", op "Snake", inputs x float [N, C, T] and alpha float [1, C, 1] (or [C]),
 * output float like x. Registered with SessionOptions.register_custom_ops_library (RegisterCustomOps).
 * Built without -march: one binary for every x86-64 / aarch64 CPU; target_clones lets GCC pick an AVX2 or
 * AVX-512 version of the loop (glibc's vector sinf) at load time where the CPU has it.
 *
 * The ORT C API headers next to this file are Microsoft's (MIT licence), from onnxruntime 1.31.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "onnxruntime_c_api.h"

#define SNAKE_API_VERSION 17 /* KernelContext_ParallelFor */

static const OrtApi *g_api;

typedef struct {
  const float *x;
  const float *alpha;
  float *y;
  int64_t channels, length;
} SnakeJob;

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define SNAKE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SNAKE_CLONES
#endif

SNAKE_CLONES
static void snake_row(const float *restrict x, float *restrict y, int64_t n, float a) {
  const float inv = 1.0f / a;
  for (int64_t i = 0; i < n; i++) {
    const float s = sinf(a * x[i]);
    y[i] = x[i] + inv * s * s;
  }
}

static void snake_rows(void *data, size_t row) {
  const SnakeJob *job = (const SnakeJob *)data;
  const int64_t c = (int64_t)row % job->channels;
  const size_t off = row * (size_t)job->length;
  snake_row(job->x + off, job->y + off, job->length, job->alpha[c]);
}

#define RETURN_IF_ERROR(expr)            \
  do {                                   \
    OrtStatus *status_ = (expr);         \
    if (status_ != NULL) return status_; \
  } while (0)

static OrtStatus *ORT_API_CALL snake_compute(void *kernel, OrtKernelContext *ctx) {
  (void)kernel;
  const OrtValue *x_value, *alpha_value;
  OrtValue *y_value;
  OrtTensorTypeAndShapeInfo *info;
  int64_t dims[8];
  size_t rank, alpha_count;
  RETURN_IF_ERROR(g_api->KernelContext_GetInput(ctx, 0, &x_value));
  RETURN_IF_ERROR(g_api->KernelContext_GetInput(ctx, 1, &alpha_value));
  RETURN_IF_ERROR(g_api->GetTensorTypeAndShape(x_value, &info));
  OrtStatus *st = g_api->GetDimensionsCount(info, &rank);
  if (st == NULL && (rank < 2 || rank > 8))
    st = g_api->CreateStatus(ORT_INVALID_ARGUMENT, "Snake: x must be [N, C, ...]");
  if (st == NULL) st = g_api->GetDimensions(info, dims, rank);
  g_api->ReleaseTensorTypeAndShapeInfo(info);
  if (st != NULL) return st;
  RETURN_IF_ERROR(g_api->GetTensorTypeAndShape(alpha_value, &info));
  st = g_api->GetTensorShapeElementCount(info, &alpha_count);
  g_api->ReleaseTensorTypeAndShapeInfo(info);
  if (st != NULL) return st;
  int64_t length = 1;
  for (size_t i = 2; i < rank; i++) length *= dims[i];
  if ((int64_t)alpha_count != dims[1])
    return g_api->CreateStatus(ORT_INVALID_ARGUMENT, "Snake: alpha must have one value per channel");
  RETURN_IF_ERROR(g_api->KernelContext_GetOutput(ctx, 0, dims, rank, &y_value));
  SnakeJob job;
  RETURN_IF_ERROR(g_api->GetTensorData(x_value, (const void **)&job.x));
  RETURN_IF_ERROR(g_api->GetTensorData(alpha_value, (const void **)&job.alpha));
  RETURN_IF_ERROR(g_api->GetTensorMutableData(y_value, (void **)&job.y));
  job.channels = dims[1];
  job.length = length;
  const size_t rows = (size_t)(dims[0] * dims[1]);
  if (rows == 0 || length == 0) return NULL;
  /* ~16k elements per task at least: small tensors are not worth waking a thread for */
  size_t per_task = (size_t)(16384 / length) + 1;
  return g_api->KernelContext_ParallelFor(ctx, snake_rows, rows, per_task, &job);
}

static OrtStatus *ORT_API_CALL snake_create(const OrtCustomOp *op, const OrtApi *api,
                                            const OrtKernelInfo *info, void **kernel) {
  (void)op; (void)api; (void)info;
  *kernel = (void *)&g_api; /* stateless; any non-NULL pointer */
  return NULL;
}

static void ORT_API_CALL snake_destroy(void *kernel) { (void)kernel; }
static const char *ORT_API_CALL snake_name(const OrtCustomOp *op) { (void)op; return "Snake"; }
static const char *ORT_API_CALL snake_ep(const OrtCustomOp *op) { (void)op; return "CPUExecutionProvider"; }
static ONNXTensorElementDataType ORT_API_CALL snake_type(const OrtCustomOp *op, size_t i) {
  (void)op; (void)i;
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}
static size_t ORT_API_CALL snake_inputs(const OrtCustomOp *op) { (void)op; return 2; }
static size_t ORT_API_CALL snake_outputs(const OrtCustomOp *op) { (void)op; return 1; }
static OrtCustomOpInputOutputCharacteristic ORT_API_CALL snake_required(const OrtCustomOp *op, size_t i) {
  (void)op; (void)i;
  return INPUT_OUTPUT_REQUIRED;
}
static OrtMemType ORT_API_CALL snake_mem(const OrtCustomOp *op, size_t i) {
  (void)op; (void)i;
  return OrtMemTypeDefault;
}
static int ORT_API_CALL snake_one(const OrtCustomOp *op) { (void)op; return 1; }
static int ORT_API_CALL snake_start(const OrtCustomOp *op) { (void)op; return 1; }
static int ORT_API_CALL snake_end(const OrtCustomOp *op) { (void)op; return 2147483647; }

static OrtCustomOp g_snake; /* zero-initialised: unused callbacks stay NULL */

#if defined(_WIN32)
#define SNAKE_EXPORT __declspec(dllexport)
#else
#define SNAKE_EXPORT __attribute__((visibility("default")))
#endif

SNAKE_EXPORT OrtStatus *ORT_API_CALL RegisterCustomOps(OrtSessionOptions *options, const OrtApiBase *base) {
  g_api = base->GetApi(SNAKE_API_VERSION);
  if (g_api == NULL) return NULL; /* cannot even report: ORT older than 1.17 */
  g_snake.version = SNAKE_API_VERSION;
  g_snake.GetName = snake_name;
  g_snake.GetExecutionProviderType = snake_ep;
  g_snake.GetInputType = snake_type;
  g_snake.GetInputTypeCount = snake_inputs;
  g_snake.GetOutputType = snake_type;
  g_snake.GetOutputTypeCount = snake_outputs;
  g_snake.KernelDestroy = snake_destroy;
  g_snake.GetInputCharacteristic = snake_required;
  g_snake.GetOutputCharacteristic = snake_required;
  g_snake.GetInputMemoryType = snake_mem;
  g_snake.GetVariadicInputMinArity = snake_one;
  g_snake.GetVariadicInputHomogeneity = snake_one;
  g_snake.GetVariadicOutputMinArity = snake_one;
  g_snake.GetVariadicOutputHomogeneity = snake_one;
  g_snake.CreateKernelV2 = snake_create;
  g_snake.KernelComputeV2 = snake_compute;
  g_snake.GetStartVersion = snake_start;
  g_snake.GetEndVersion = snake_end;
  OrtCustomOpDomain *domain = NULL;
  RETURN_IF_ERROR(g_api->CreateCustomOpDomain("kokoro_api", &domain));
  RETURN_IF_ERROR(g_api->CustomOpDomain_Add(domain, &g_snake));
  return g_api->AddCustomOpDomain(options, domain);
}
