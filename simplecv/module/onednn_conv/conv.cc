// Dygraph conv2d (NCHW, fp32, CPU, groups=1) whose forward, backward-data and backward-weights run
// oneDNN primitives from the libdnnl.so.3 bundled with Paddle's wheel.
//
// Every op takes and returns plain NCHW / OIHW Paddle tensors. The primitives are created with
// format_tag::any, so oneDNN picks its preferred (blocked) layouts; reorders to and from them run
// inside the op, into one scratch arena reused by every call. Primitive descriptors and
// primitives are cached per (shape, stride, padding, dilation, bias) key.
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "paddle/extension.h"

namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Growable buffers reused across calls: the ops run one at a time (guarded by g_mutex) and no
// buffer outlives the call that filled it.
struct Arena {
  std::vector<std::unique_ptr<char[]>> slots;
  std::vector<size_t> sizes;
  void* get(size_t slot, size_t bytes) {
    if (slots.size() <= slot) {
      slots.resize(slot + 1);
      sizes.resize(slot + 1, 0);
    }
    if (sizes[slot] < bytes) {
      slots[slot].reset(new char[bytes + 64]);
      sizes[slot] = bytes;
    }
    // 64-byte alignment for the JIT kernels.
    uintptr_t p = reinterpret_cast<uintptr_t>(slots[slot].get());
    return reinterpret_cast<void*>((p + 63) & ~uintptr_t(63));
  }
};

Arena g_arena;
std::mutex g_mutex;

struct Geometry {
  memory::dims src, wei, dst, bias, strides, dilates, pad_l, pad_r;
  bool has_bias;
  std::string key;
};

Geometry make_geometry(const std::vector<int64_t>& x_shape, const std::vector<int64_t>& w_shape,
                       const std::vector<int>& strides, const std::vector<int>& paddings,
                       const std::vector<int>& dilations, bool has_bias) {
  PD_CHECK(x_shape.size() == 4 && w_shape.size() == 4, "onednn_conv2d: 4-D input and weight expected");
  PD_CHECK(x_shape[1] == w_shape[1], "onednn_conv2d: groups=1 only (input channels must match weight)");
  Geometry g;
  g.has_bias = has_bias;
  g.src = {x_shape[0], x_shape[1], x_shape[2], x_shape[3]};
  g.wei = {w_shape[0], w_shape[1], w_shape[2], w_shape[3]};
  g.bias = {w_shape[0]};
  int64_t out_hw[2];
  for (int i = 0; i < 2; ++i) {
    int64_t in = x_shape[2 + i], k = w_shape[2 + i];
    int64_t s = strides[i], p = paddings[i], d = dilations[i];
    int64_t eff_k = (k - 1) * d + 1;
    out_hw[i] = (in + 2 * p - eff_k) / s + 1;
    PD_CHECK(out_hw[i] > 0, "onednn_conv2d: empty output");
    g.strides.push_back(s);
    g.dilates.push_back(d - 1);  // oneDNN counts dilation from 0
    g.pad_l.push_back(p);
    // Rows/columns the output actually reads past the input (may be < p when the division floors).
    g.pad_r.push_back((out_hw[i] - 1) * s + eff_k - in - p);
  }
  g.dst = {x_shape[0], w_shape[0], out_hw[0], out_hw[1]};
  std::string key;
  for (const auto* v : {&g.src, &g.wei, &g.strides, &g.dilates, &g.pad_l, &g.pad_r}) {
    for (auto e : *v) key += std::to_string(e) + ",";
    key += ";";
  }
  key += has_bias ? "b" : "n";
  g.key = key;
  return g;
}

memory::desc any_md(const memory::dims& d) { return memory::desc(d, dt::f32, tag::any); }
memory::desc plain_md(const memory::dims& d) {
  return memory::desc(d, dt::f32, d.size() == 4 ? tag::nchw : tag::a);
}

dnnl::primitive_attr user_scratchpad_attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// The bias descriptor of g: the plain vector, or the zero descriptor, which tells oneDNN there is no bias.
memory::desc bias_md(const Geometry& g) { return g.has_bias ? plain_md(g.bias) : memory::desc(); }

dnnl::convolution_forward::primitive_desc forward_pd(const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      cpu_engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, any_md(g.src),
      any_md(g.wei), bias_md(g), any_md(g.dst), g.strides, g.dilates, g.pad_l, g.pad_r, user_scratchpad_attr());
}

// A primitive of kind Prim (forward, backward-data or backward-weights) and its descriptor.
template <typename Prim>
struct Entry {
  typename Prim::primitive_desc pd;
  Prim prim;
};

template <typename Prim>
using Cache = std::unordered_map<std::string, std::shared_ptr<Entry<Prim>>>;

Cache<dnnl::convolution_forward> g_fwd;
Cache<dnnl::convolution_backward_data> g_bwd_data;
Cache<dnnl::convolution_backward_weights> g_bwd_weights;

// The entry of `cache` for g's key; the first time, its primitive is created from the descriptor make_pd() returns.
template <typename Prim, typename MakePd>
std::shared_ptr<Entry<Prim>> cached(Cache<Prim>& cache, const Geometry& g, MakePd make_pd) {
  auto it = cache.find(g.key);
  if (it != cache.end()) return it->second;
  typename Prim::primitive_desc pd = make_pd();
  auto e = std::make_shared<Entry<Prim>>(Entry<Prim>{pd, Prim(pd)});
  cache[g.key] = e;
  return e;
}

std::shared_ptr<Entry<dnnl::convolution_forward>> get_fwd(const Geometry& g) {
  return cached(g_fwd, g, [&] { return forward_pd(g); });
}

std::shared_ptr<Entry<dnnl::convolution_backward_data>> get_bwd_data(const Geometry& g) {
  return cached(g_bwd_data, g, [&] {
    return dnnl::convolution_backward_data::primitive_desc(
        cpu_engine(), dnnl::algorithm::convolution_direct, any_md(g.src), any_md(g.wei), any_md(g.dst), g.strides,
        g.dilates, g.pad_l, g.pad_r, forward_pd(g), user_scratchpad_attr());
  });
}

std::shared_ptr<Entry<dnnl::convolution_backward_weights>> get_bwd_weights(const Geometry& g) {
  return cached(g_bwd_weights, g, [&] {
    return dnnl::convolution_backward_weights::primitive_desc(
        cpu_engine(), dnnl::algorithm::convolution_direct, any_md(g.src), any_md(g.wei), bias_md(g), any_md(g.dst),
        g.strides, g.dilates, g.pad_l, g.pad_r, forward_pd(g), user_scratchpad_attr());
  });
}

// A oneDNN memory in the primitive's layout `want` holding the plain tensor at `data`:
// the plain memory itself when the layouts agree, else a reorder into arena slot `slot`.
memory input_memory(const memory::desc& want, const memory::dims& dims, const float* data, size_t slot,
                    dnnl::stream& s) {
  auto& eng = cpu_engine();
  memory user(plain_md(dims), eng, const_cast<float*>(data));
  if (want == user.get_desc()) return user;
  memory internal(want, eng, g_arena.get(slot, want.get_size()));
  dnnl::reorder(user, internal).execute(s, user, internal);
  return internal;
}

// The memory a primitive writes: the plain output itself when the layouts agree, else a buffer in
// arena slot `slot` to be reordered into the output by finish_output.
memory output_memory(const memory::desc& got, const memory::dims& dims, float* data, size_t slot) {
  auto& eng = cpu_engine();
  memory user(plain_md(dims), eng, data);
  if (got == user.get_desc()) return user;
  return memory(got, eng, g_arena.get(slot, got.get_size()));
}

void finish_output(memory& written, const memory::dims& dims, float* data, dnnl::stream& s) {
  memory user(plain_md(dims), cpu_engine(), data);
  if (written.get_data_handle() == data) return;
  dnnl::reorder(written, user).execute(s, written, user);
}

memory scratchpad(const memory::desc& md) {
  return memory(md, cpu_engine(), g_arena.get(7, md.get_size() > 0 ? md.get_size() : 1));
}

std::vector<int64_t> to_vec(const memory::dims& d) { return std::vector<int64_t>(d.begin(), d.end()); }

void check_input(const paddle::Tensor& t, const char* name) {
  PD_CHECK(t.is_cpu(), name, " must be a CPU tensor");
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT32, name, " must be float32");
}

// The geometry of a backward pass, after checking dY (grad_out) and its shape.
Geometry grad_geometry(const paddle::Tensor& x, const paddle::Tensor& w, const paddle::Tensor& dy,
                       const std::vector<int>& strides, const std::vector<int>& paddings,
                       const std::vector<int>& dilations, bool has_bias) {
  check_input(dy, "grad_out");
  Geometry g = make_geometry(x.shape(), w.shape(), strides, paddings, dilations, has_bias);
  PD_CHECK(to_vec(g.dst) == dy.shape(), "onednn_conv2d_grad: grad_out shape mismatch");
  return g;
}

std::vector<paddle::Tensor> run_forward(const paddle::Tensor& x, const paddle::Tensor& w, const paddle::Tensor* b,
                                        const std::vector<int>& strides, const std::vector<int>& paddings,
                                        const std::vector<int>& dilations) {
  check_input(x, "x");
  check_input(w, "weight");
  std::lock_guard<std::mutex> lock(g_mutex);
  Geometry g = make_geometry(x.shape(), w.shape(), strides, paddings, dilations, b != nullptr);
  auto e = get_fwd(g);
  dnnl::stream s(cpu_engine());
  auto out = paddle::empty(to_vec(g.dst), paddle::DataType::FLOAT32, paddle::CPUPlace());
  memory src = input_memory(e->pd.src_desc(), g.src, x.data<float>(), 0, s);
  memory wei = input_memory(e->pd.weights_desc(), g.wei, w.data<float>(), 1, s);
  memory dst = output_memory(e->pd.dst_desc(), g.dst, out.data<float>(), 2);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst},
                                       {DNNL_ARG_SCRATCHPAD, scratchpad(e->pd.scratchpad_desc())}};
  if (b != nullptr) {
    check_input(*b, "bias");
    args[DNNL_ARG_BIAS] = memory(plain_md(g.bias), cpu_engine(), const_cast<float*>(b->data<float>()));
  }
  e->prim.execute(s, args);
  finish_output(dst, g.dst, out.data<float>(), s);
  s.wait();
  return {out};
}

// dX from dY and W, or an unfilled tensor of X's shape when X needs no gradient (Paddle drops it).
paddle::Tensor run_backward_data(const paddle::Tensor& x, const paddle::Tensor& w, const paddle::Tensor& dy,
                                 const std::vector<int>& strides, const std::vector<int>& paddings,
                                 const std::vector<int>& dilations, bool need_dx) {
  auto dx = paddle::empty(x.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  if (!need_dx) return dx;
  Geometry g = grad_geometry(x, w, dy, strides, paddings, dilations, false);
  std::lock_guard<std::mutex> lock(g_mutex);
  auto e = get_bwd_data(g);
  dnnl::stream s(cpu_engine());
  memory ddst = input_memory(e->pd.diff_dst_desc(), g.dst, dy.data<float>(), 0, s);
  memory wei = input_memory(e->pd.weights_desc(), g.wei, w.data<float>(), 1, s);
  memory dsrc = output_memory(e->pd.diff_src_desc(), g.src, dx.data<float>(), 2);
  e->prim.execute(s, {{DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DIFF_SRC, dsrc},
                      {DNNL_ARG_SCRATCHPAD, scratchpad(e->pd.scratchpad_desc())}});
  finish_output(dsrc, g.src, dx.data<float>(), s);
  s.wait();
  return dx;
}

// dW (and dB when with_bias) from X and dY.
std::vector<paddle::Tensor> run_backward_weights(const paddle::Tensor& x, const paddle::Tensor& w,
                                                 const paddle::Tensor& dy, const std::vector<int>& strides,
                                                 const std::vector<int>& paddings, const std::vector<int>& dilations,
                                                 bool with_bias) {
  Geometry g = grad_geometry(x, w, dy, strides, paddings, dilations, with_bias);
  std::lock_guard<std::mutex> lock(g_mutex);
  auto e = get_bwd_weights(g);
  dnnl::stream s(cpu_engine());
  auto dw = paddle::empty(w.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  memory src = input_memory(e->pd.src_desc(), g.src, x.data<float>(), 0, s);
  memory ddst = input_memory(e->pd.diff_dst_desc(), g.dst, dy.data<float>(), 1, s);
  memory dwei = output_memory(e->pd.diff_weights_desc(), g.wei, dw.data<float>(), 2);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, dwei},
                                       {DNNL_ARG_SCRATCHPAD, scratchpad(e->pd.scratchpad_desc())}};
  std::vector<paddle::Tensor> result;
  if (with_bias) {
    auto db = paddle::empty({g.bias[0]}, paddle::DataType::FLOAT32, paddle::CPUPlace());
    args[DNNL_ARG_DIFF_BIAS] = memory(plain_md(g.bias), cpu_engine(), db.data<float>());
    e->prim.execute(s, args);
    result = {dw, db};
  } else {
    e->prim.execute(s, args);
    result = {dw};
  }
  finish_output(dwei, g.wei, dw.data<float>(), s);
  s.wait();
  return result;
}

// The attributes of the ops: stride, padding and dilation (height, width), then need_dx when with_need_dx.
std::vector<std::string> conv_attrs(bool with_need_dx) {
  std::vector<std::string> attrs{"strides: std::vector<int>", "paddings: std::vector<int>",
                                 "dilations: std::vector<int>"};
  if (with_need_dx) attrs.push_back("need_dx: bool");
  return attrs;
}

std::vector<int64_t> conv_out_shape(const std::vector<int64_t>& x, const std::vector<int64_t>& w,
                                    const std::vector<int>& s, const std::vector<int>& p, const std::vector<int>& d) {
  std::vector<int64_t> out{x[0], w[0], 0, 0};
  for (int i = 0; i < 2; ++i) out[2 + i] = (x[2 + i] + 2 * p[i] - ((w[2 + i] - 1) * d[i] + 1)) / s[i] + 1;
  return out;
}

}  // namespace

// need_dx (false when X has stop_gradient, e.g. the image into the stem) lets the backward skip dX.
std::vector<paddle::Tensor> ConvForward(const paddle::Tensor& x, const paddle::Tensor& w,
                                        const std::vector<int>& strides, const std::vector<int>& paddings,
                                        const std::vector<int>& dilations, bool need_dx) {
  return run_forward(x, w, nullptr, strides, paddings, dilations);
}

std::vector<paddle::Tensor> ConvGrad(const paddle::Tensor& x, const paddle::Tensor& w, const paddle::Tensor& dy,
                                     const std::vector<int>& strides, const std::vector<int>& paddings,
                                     const std::vector<int>& dilations, bool need_dx) {
  auto dx = run_backward_data(x, w, dy, strides, paddings, dilations, need_dx);
  auto dw = run_backward_weights(x, w, dy, strides, paddings, dilations, false);
  return {dx, dw[0]};
}

std::vector<paddle::Tensor> ConvBiasForward(const paddle::Tensor& x, const paddle::Tensor& w, const paddle::Tensor& b,
                                            const std::vector<int>& strides, const std::vector<int>& paddings,
                                            const std::vector<int>& dilations, bool need_dx) {
  return run_forward(x, w, &b, strides, paddings, dilations);
}

std::vector<paddle::Tensor> ConvBiasGrad(const paddle::Tensor& x, const paddle::Tensor& w, const paddle::Tensor& b,
                                         const paddle::Tensor& dy, const std::vector<int>& strides,
                                         const std::vector<int>& paddings, const std::vector<int>& dilations,
                                         bool need_dx) {
  auto dx = run_backward_data(x, w, dy, strides, paddings, dilations, need_dx);
  auto dw_db = run_backward_weights(x, w, dy, strides, paddings, dilations, true);
  return {dx, dw_db[0], dw_db[1]};
}

// Which implementation oneDNN picked for each pass of a geometry, e.g. "jit:avx2|jit:avx2|jit:avx2".
std::vector<paddle::Tensor> ConvImplInfo(const paddle::Tensor& x, const paddle::Tensor& w,
                                         const std::vector<int>& strides, const std::vector<int>& paddings,
                                         const std::vector<int>& dilations) {
  std::lock_guard<std::mutex> lock(g_mutex);
  Geometry g = make_geometry(x.shape(), w.shape(), strides, paddings, dilations, false);
  std::string info = std::string(get_fwd(g)->pd.impl_info_str()) + "|" + get_bwd_data(g)->pd.impl_info_str() + "|" +
                     get_bwd_weights(g)->pd.impl_info_str();
  auto out = paddle::empty({static_cast<int64_t>(info.size())}, paddle::DataType::UINT8, paddle::CPUPlace());
  std::memcpy(out.data<uint8_t>(), info.data(), info.size());
  return {out};
}

std::vector<std::vector<int64_t>> ConvInferShape(const std::vector<int64_t>& x, const std::vector<int64_t>& w,
                                                 const std::vector<int>& s, const std::vector<int>& p,
                                                 const std::vector<int>& d, bool need_dx) {
  return {conv_out_shape(x, w, s, p, d)};
}

std::vector<std::vector<int64_t>> ConvBiasInferShape(const std::vector<int64_t>& x, const std::vector<int64_t>& w,
                                                     const std::vector<int64_t>& b, const std::vector<int>& s,
                                                     const std::vector<int>& p, const std::vector<int>& d,
                                                     bool need_dx) {
  return {conv_out_shape(x, w, s, p, d)};
}

std::vector<std::vector<int64_t>> ImplInfoInferShape(const std::vector<int64_t>& x, const std::vector<int64_t>& w,
                                                     const std::vector<int>& s, const std::vector<int>& p,
                                                     const std::vector<int>& d) {
  return {{-1}};
}

std::vector<paddle::DataType> SameAsX2(const paddle::DataType& x, const paddle::DataType& w) { return {x}; }
std::vector<paddle::DataType> SameAsX3(const paddle::DataType& x, const paddle::DataType& w,
                                       const paddle::DataType& b) {
  return {x};
}
std::vector<paddle::DataType> Bytes(const paddle::DataType& x, const paddle::DataType& w) {
  return {paddle::DataType::UINT8};
}

// Registers the forward op `name`: its inputs (the trailing arguments), one output, the conv attributes (need_dx
// when with_need_dx), and its kernel, shape and dtype functions.
#define CONV_FORWARD_OP(name, output, with_need_dx, kernel, infer_shape, infer_dtype, ...) \
  PD_BUILD_OP(name)                                                                       \
      .Inputs({__VA_ARGS__})                                                              \
      .Outputs({output})                                                                  \
      .Attrs(conv_attrs(with_need_dx))                                                    \
      .SetKernelFn(PD_KERNEL(kernel))                                                     \
      .SetInferShapeFn(PD_INFER_SHAPE(infer_shape))                                       \
      .SetInferDtypeFn(PD_INFER_DTYPE(infer_dtype))

CONV_FORWARD_OP(onednn_conv2d, "Out", true, ConvForward, ConvInferShape, SameAsX2, "X", "W");

PD_BUILD_GRAD_OP(onednn_conv2d)
    .Inputs({"X", "W", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("W")})
    .Attrs(conv_attrs(true))
    .SetKernelFn(PD_KERNEL(ConvGrad));

CONV_FORWARD_OP(onednn_conv2d_bias, "Out", true, ConvBiasForward, ConvBiasInferShape, SameAsX3, "X", "W", "B");

PD_BUILD_GRAD_OP(onednn_conv2d_bias)
    .Inputs({"X", "W", "B", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("W"), paddle::Grad("B")})
    .Attrs(conv_attrs(true))
    .SetKernelFn(PD_KERNEL(ConvBiasGrad));

CONV_FORWARD_OP(onednn_conv2d_impl_info, "Info", false, ConvImplInfo, ImplInfoInferShape, Bytes, "X", "W");
