/* nvrtc_stub.c - stand-in for the NVRTC that cumm links (pack.sh): every call fails */
typedef int nvrtcResult;
typedef void *nvrtcProgram;
#define STUB(name, ...) nvrtcResult name(__VA_ARGS__) { return 7; }
const char *nvrtcGetErrorString(nvrtcResult r) { (void)r; return "NVRTC stub (carried spconv: no run-time compilation)"; }
STUB(nvrtcAddNameExpression, nvrtcProgram p, const char *n) 
STUB(nvrtcCompileProgram, nvrtcProgram p, int n, const char *const *o)
STUB(nvrtcCreateProgram, nvrtcProgram *p, const char *s, const char *n, int k, const char *const *h, const char *const *i)
STUB(nvrtcDestroyProgram, nvrtcProgram *p)
STUB(nvrtcGetCUBIN, nvrtcProgram p, char *c)
STUB(nvrtcGetCUBINSize, nvrtcProgram p, unsigned long *s)
STUB(nvrtcGetLoweredName, nvrtcProgram p, const char *n, const char **l)
STUB(nvrtcGetPTX, nvrtcProgram p, char *c)
STUB(nvrtcGetPTXSize, nvrtcProgram p, unsigned long *s)
STUB(nvrtcGetProgramLog, nvrtcProgram p, char *c)
STUB(nvrtcGetProgramLogSize, nvrtcProgram p, unsigned long *s)
