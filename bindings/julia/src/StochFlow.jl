"""
    StochFlow

Julia bindings for libstochflow (continuous-time normalizing flows trained with stochastic
interpolants): a thin layer of `ccall`s over the C ABI in include/stochflow.h, mirroring the
Python package `stochflow` one to one.

UNTESTED: no Julia is installed where this library is developed and tested. The file is
kept small and every `ccall` signature is checked against the C header by
bindings/check_symbols.py (run by `meson test`), but it has never been executed.

Layout: Julia is column-major, the library row-major. A batch of n points in d dimensions
is therefore a `d × n` `Matrix{Float32}` here (one point per column), which has exactly the
memory layout of the C library's row-major `n × d`. Nothing is transposed or copied when the
input already is a `Matrix{Float32}`.

The library is `ENV["STOCHFLOW_LIBRARY"]` when set at load time, else `libstochflow.so.1`
from the system loader's path.
"""
module StochFlow

export Model, Solver, StochFlowError, train_step!, loss, velocity, divergence, sample,
       log_prob, integrate, save, load, parameters, gradients, set_param!, get_param,
       toy_sample, toy_names, random_normal, random_uniform, version, interpolant_eval,
       interpolant_coefficients, path_length, coupling_assign, unet_settings, images_load,
       images_dequantize, images_to_float, images_quantize, bits_per_dim, images_write_grid,
       param_key, param_name, param_names, param_bounds, context, train_step_ctx!,
       velocity_ctx, sample_ctx, log_prob_ctx,
       sample_sde, sde_log_prob,
       Trainer, fit!, stats, state_bytes, load_state!, read_npy, read_csv, parse_npy,
       parse_csv, fit_standardization!, fit_whitening!, set_standardization!,
       set_whitening!, standardization, whitening, standardize,
       fit_context_standardization!, set_context_standardization!, context_standardization

const libstochflow = get(ENV, "STOCHFLOW_LIBRARY", "libstochflow.so.1")

# ---- errors -------------------------------------------------------------------------

const STATUS_NAMES = Dict(
    -1 => :invalid, -2 => :nomem, -3 => :io, -4 => :format, -5 => :nonfinite,
    -6 => :step_underflow, -7 => :max_steps, -8 => :cancelled, -9 => :unsupported,
    -10 => :version, -11 => :callback)

"""
    StochFlowError(status, kind, message, func)

A failing library call: `status` is the negative STOCHFLOW_E_* code, `kind` its name
(`:invalid`, `:nomem`, `:io`, `:format`, `:nonfinite`, `:step_underflow`, `:max_steps`,
`:cancelled`, `:unsupported`, `:version`, `:callback`), `message` the library's detail.
(Python has one exception subclass per code; Julia dispatches on `kind` instead.)
"""
struct StochFlowError <: Exception
    status::Int
    kind::Symbol
    message::String
    func::String
end

status_string(status::Integer) =
    unsafe_string(ccall((:stochflow_status_string, libstochflow), Ptr{Cchar}, (Cint,), status))

function Base.showerror(io::IO, e::StochFlowError)
    print(io, e.func, ": ", status_string(e.status), " (", e.status, ")")
    isempty(e.message) || print(io, ": ", e.message)
end

function check(status::Integer, func::AbstractString)
    if status < 0
        msg = unsafe_string(ccall((:stochflow_last_error_message, libstochflow), Ptr{Cchar}, ()))
        throw(StochFlowError(status, get(STATUS_NAMES, status, :other), msg, func))
    end
    return status
end

"""Run-time library version "MAJOR.MINOR.PATCH"."""
version() = unsafe_string(ccall((:stochflow_version_string, libstochflow), Ptr{Cchar}, ()))

# ---- names of enumerated values and keyed parameters (as in the Python package) -------

const ACTIVATIONS = Dict(:silu => 1, :tanh => 2, :relu => 3, :softplus => 4)
const INTERPOLANTS = Dict(:trig => 1, :linear => 2)
const TIME_EMBEDDINGS = Dict(:raw => 1, :fourier => 2)
const SOLVERS = Dict(:euler => 1, :heun => 2, :rk4 => 3, :dopri5 => 4)
const TRACES = Dict(:exact => 1, :hutchinson => 2)
const PROBE_DISTS = Dict(:rademacher => 1, :gaussian => 2)
const LR_SCHEDULES = Dict(:constant => 1, :step => 2, :cosine => 3)
const EVAL_WEIGHTS = Dict(:ema => 1, :live => 2)
const EMA_WARMUP = Dict(:on => 1, :off => 2)
const COUPLINGS = Dict(:independent => 1, :ot => 2, :sinkhorn => 3)
const TRAIN_TARGETS = Dict(:draw => 1, :batch => 2)

# Keyed parameters: names, keys and bounds come from the library's table (as in the Python
# package); only the words for enum codes are the binding's own.
const ENUM_WORDS = Dict(:lr_schedule => LR_SCHEDULES, :ema_warmup => EMA_WARMUP,
                        :eval_weights => EVAL_WEIGHTS, :coupling => COUPLINGS,
                        :solver => SOLVERS, :trace => TRACES, :probe_dist => PROBE_DISTS,
                        :train_target => TRAIN_TARGETS)

"""Key of a keyed parameter name (e.g. :lr -> 100); StochFlowError :unsupported when unknown."""
function param_key(name)
    key = Ref{Cint}(0)
    check(ccall((:stochflow_param_key, libstochflow), Cint, (Ptr{Cint}, Cstring), key,
                String(name)), "stochflow_param_key")
    return Int(key[])
end

"""Name of a keyed parameter key (e.g. 100 -> "lr")."""
function param_name(key::Integer)
    p = ccall((:stochflow_param_name, libstochflow), Ptr{Cchar}, (Cint,), key)
    p == C_NULL && throw(StochFlowError(-9, :unsupported, "unknown parameter key $key",
                                        "stochflow_param_name"))
    return unsafe_string(p)
end

"""Every keyed parameter's name, in the library's table order."""
function param_names()
    n = Int(ccall((:stochflow_param_count, libstochflow), Csize_t, ()))
    return [param_name(ccall((:stochflow_param_key_at, libstochflow), Cint, (Csize_t,), i))
            for i in 0:n-1]
end

"""(lo, hi, default) of a keyed parameter, by name or key."""
function param_bounds(name)
    key = name isa Integer ? name : param_key(name)
    lo, hi, de = Ref{Cdouble}(0), Ref{Cdouble}(0), Ref{Cdouble}(0)
    check(ccall((:stochflow_param_bounds, libstochflow), Cint,
                (Ptr{Cdouble}, Ptr{Cdouble}, Ptr{Cdouble}, Cint), lo, hi, de, key),
          "stochflow_param_bounds")
    return lo[], hi[], de[]
end

enumvalue(v::Symbol, table, what) =
    haskey(table, v) ? table[v] : throw(ArgumentError("unknown $what $v; expected one of $(sort(collect(keys(table))))"))
enumvalue(v::AbstractString, table, what) = enumvalue(Symbol(lowercase(v)), table, what)
enumvalue(v::Real, table, what) = v

# (key, enum words or nothing) of a model (100s, 400s) or solver (200s, 300s) parameter
function paramkey(name::Symbol, what)
    key = try
        param_key(name)
    catch e
        e isa StochFlowError ? throw(ArgumentError("unknown $what parameter $name")) : rethrow()
    end
    (div(key, 100) in (1, 4)) == (what == "model") ||
        throw(ArgumentError("unknown $what parameter $name"))
    return key, get(ENUM_WORDS, name, nothing)
end

# ---- arrays -------------------------------------------------------------------------

"""A d × n Matrix{Float32} for the batch x (no copy when x already is one)."""
function points(x::AbstractMatrix, d::Integer, name = "x")
    size(x, 1) == d || throw(DimensionMismatch("$name must have size ($d, n), got $(size(x))"))
    size(x, 2) >= 1 || throw(DimensionMismatch("$name must hold at least one point, got $(size(x))"))
    xx = x isa Matrix{Float32} ? x : Matrix{Float32}(x)
    bad = findfirst(!isfinite, xx)
    if bad !== nothing  # row = point, column = coordinate, as the CLI and Python say them
        v = xx[bad]
        throw(StochFlowError(-5, :nonfinite,
                             "$name: $(isnan(v) ? "NaN" : "infinite") value at row $(bad[2]), " *
                             "column $(bad[1]) (data must be finite)", "points"))
    end
    return xx
end
points(x::AbstractArray, d::Integer, name = "x") =
    throw(DimensionMismatch("$name must have size ($d, n), got $(size(x))"))

# ---- U-Net configuration ------------------------------------------------------------

const UNET_MAX_LEVELS = 6
const ARCH_UNET = 2

# stochflow_unet_options, field for field (isbits, so ccall passes it by pointer).
struct UnetOptions
    size::Csize_t
    channels::Csize_t
    height::Csize_t
    width::Csize_t
    base::Csize_t
    n_levels::Csize_t
    mult::NTuple{UNET_MAX_LEVELS,Csize_t}
    blocks::Csize_t
    attn_mask::UInt32
    reserved32::UInt32
    groups::Csize_t
    reserved::NTuple{4,UInt64}
end

function set_unet(cfg::Ptr{Cvoid}, u)
    mult = Csize_t[v for v in get(u, :mult, (1, 2, 2))]
    1 <= length(mult) <= UNET_MAX_LEVELS ||
        throw(ArgumentError("mult must have 1..$UNET_MAX_LEVELS entries"))
    attn = get(u, :attn_mask, nothing)
    attn = attn === nothing ? UInt32(1) << (length(mult) - 1) : UInt32(attn)
    r = Ref{UnetOptions}()
    check(ccall((:stochflow_unet_options_init, libstochflow), Cint,
                (Ptr{UnetOptions}, Csize_t), r, sizeof(UnetOptions)),
          "stochflow_unet_options_init")
    d = r[]
    m = ntuple(i -> i <= length(mult) ? mult[i] : Csize_t(0), UNET_MAX_LEVELS)
    o = Ref(UnetOptions(d.size, u.channels, u.height, u.width, get(u, :base, d.base),
                        length(mult), m, get(u, :blocks, d.blocks), attn, 0,
                        get(u, :groups, d.groups), d.reserved))
    check(ccall((:stochflow_config_set_unet, libstochflow), Cint,
                (Ptr{Cvoid}, Ptr{UnetOptions}), cfg, o), "stochflow_config_set_unet")
end

# ---- model --------------------------------------------------------------------------

"""
    Model(dim; hidden=(256, 256, 256), activation=:silu, interpolant=:trig, seed=0,
          threads=nothing, time_embedding=:raw, n_freq=0, n_modes=0, interp_base=:linear,
          tunables...)

A velocity network, its Adam optimizer and its random stream; freed by a finalizer.
`tunables` are the keyed parameters by name (lr, beta1, beta2, adam_eps, weight_decay,
grad_clip, ema_decay, lr_schedule (:cosine needs lr_total_steps with it), lr_decay_every,
lr_decay_factor, lr_warmup, lr_total_steps, lr_min, ema_warmup (:on/:off), eval_weights, interp_lr, coupling,
sinkhorn_reg, train_target (:draw/:batch)).
`interpolant = :fourier` is the learnable interpolant with `n_modes` modes over `interp_base`.
`resmlp = (width, blocks)` makes the velocity field a residual MLP with that many pre-norm
residual blocks with LayerNorm (`stochflow_config_set_resmlp`); `hidden` is then ignored.
`resmlp = (width, blocks, experts)` adds that many gated linear experts to its output
(`stochflow_config_set_resmlp_experts`).
`unet = (channels=1, height=28, width=28, base=32, mult=(1, 2, 2), blocks=1, attn_mask=4,
groups=8)` (a NamedTuple; channels, height and width required, the others default as
shown, attn_mask to the lowest level) makes the velocity field a convolutional U-Net over
images (doc/unet.md); a batch is then `dim × n` with each column one flattened image in the
C order (w fastest), i.e. `reshape(images, :, n)` of a `w × h × c × n` array.
"""
mutable struct Model
    ptr::Ptr{Cvoid}
    dim::Int
    horizon_known::Bool  # lr_total_steps chosen (explicitly, or saved in a loaded file)
    function Model(ptr::Ptr{Cvoid}; horizon_known::Bool = true)
        d = Int(ccall((:stochflow_model_dim, libstochflow), Csize_t, (Ptr{Cvoid},), ptr))
        m = new(ptr, d, horizon_known)
        finalizer(m) do m
            ccall((:stochflow_model_free, libstochflow), Cvoid, (Ptr{Cvoid},), m.ptr)
            m.ptr = C_NULL
        end
        return m
    end
end

function Model(dim::Integer; hidden = (256, 256, 256), activation = :silu,
               interpolant = :trig, seed::Integer = 0, threads = nothing,
               time_embedding = :raw, n_freq::Integer = 0, n_modes::Integer = 0,
               interp_base = :linear, unet = nothing, n_ctx::Integer = 0,
               n_classes::Integer = 0, objective = nothing, gamma = nothing,
               antithetic::Bool = false, resmlp = nothing, tunables...)
    cfg = Ref{Ptr{Cvoid}}(C_NULL)
    check(ccall((:stochflow_config_new, libstochflow), Cint, (Ptr{Ptr{Cvoid}}, Csize_t),
                cfg, dim), "stochflow_config_new")
    local handle
    try
        widths = Csize_t[h for h in hidden]
        check(ccall((:stochflow_config_set_hidden, libstochflow), Cint,
                    (Ptr{Cvoid}, Csize_t, Ptr{Csize_t}), cfg[], length(widths), widths),
              "stochflow_config_set_hidden")
        check(ccall((:stochflow_config_set_activation, libstochflow), Cint, (Ptr{Cvoid}, Cint),
                    cfg[], enumvalue(activation, ACTIVATIONS, "activation")),
              "stochflow_config_set_activation")
        check(ccall((:stochflow_config_set_time_embedding, libstochflow), Cint,
                    (Ptr{Cvoid}, Cint, Csize_t), cfg[],
                    enumvalue(time_embedding, TIME_EMBEDDINGS, "time embedding"), n_freq),
              "stochflow_config_set_time_embedding")
        if interpolant === :fourier || interpolant == "fourier"
            check(ccall((:stochflow_config_set_fourier_interpolant, libstochflow), Cint,
                        (Ptr{Cvoid}, Cint, Csize_t), cfg[],
                        enumvalue(interp_base, INTERPOLANTS, "interpolant base"), n_modes),
                  "stochflow_config_set_fourier_interpolant")
        else
            check(ccall((:stochflow_config_set_interpolant, libstochflow), Cint,
                        (Ptr{Cvoid}, Cint), cfg[],
                        enumvalue(interpolant, INTERPOLANTS, "interpolant")),
                  "stochflow_config_set_interpolant")
        end
        check(ccall((:stochflow_config_set_seed, libstochflow), Cint, (Ptr{Cvoid}, UInt64),
                    cfg[], seed), "stochflow_config_set_seed")
        if resmlp !== nothing
            unet === nothing ||
                throw(ArgumentError("resmlp and unet both choose the network: give one"))
            length(resmlp) in (2, 3) ||
                throw(ArgumentError("resmlp: (width, blocks) or (width, blocks, experts)"))
            check(ccall((:stochflow_config_set_resmlp, libstochflow), Cint,
                        (Ptr{Cvoid}, Csize_t, Csize_t), cfg[], resmlp[1], resmlp[2]),
                  "stochflow_config_set_resmlp")
            length(resmlp) == 3 &&
                check(ccall((:stochflow_config_set_resmlp_experts, libstochflow), Cint,
                            (Ptr{Cvoid}, Csize_t), cfg[], resmlp[3]),
                      "stochflow_config_set_resmlp_experts")
        end
        unet === nothing || set_unet(cfg[], unet)
        if n_ctx != 0 || n_classes != 0
            check(ccall((:stochflow_config_set_context, libstochflow), Cint,
                        (Ptr{Cvoid}, Csize_t, Csize_t), cfg[], n_ctx, n_classes),
                  "stochflow_config_set_context")
        end
        if objective !== nothing || gamma !== nothing || antithetic
            set_objective(cfg[], objective === nothing ? :velocity : objective, gamma, antithetic)
        end
        h = Ref{Ptr{Cvoid}}(C_NULL)
        check(ccall((:stochflow_model_new, libstochflow), Cint, (Ptr{Ptr{Cvoid}}, Ptr{Cvoid}),
                    h, cfg[]), "stochflow_model_new")
        handle = h[]
    finally
        ccall((:stochflow_config_free, libstochflow), Cvoid, (Ptr{Cvoid},), cfg[])
    end
    m = Model(handle; horizon_known = false)
    threads === nothing || set_param!(m, :threads, threads)
    # the cosine horizon first: choosing the cosine schedule needs it
    for (name, value) in sort(collect(tunables); by = p -> p[1] != :lr_total_steps)
        set_param!(m, name, value)
    end
    return m
end

num_params(m::Model) =
    Int(ccall((:stochflow_model_num_params, libstochflow), Csize_t, (Ptr{Cvoid},), m.ptr))
step(m::Model) = ccall((:stochflow_model_step, libstochflow), UInt64, (Ptr{Cvoid},), m.ptr)

function set_param!(m::Model, name::Symbol, value)
    key, values = paramkey(name, "model")
    v = values === nothing ? value : enumvalue(value, values, String(name))
    name === :lr_schedule && v == LR_SCHEDULES[:cosine] && !m.horizon_known &&
        throw(ArgumentError("lr_schedule = :cosine needs its horizon: set lr_total_steps " *
                            "(the number of training steps the cosine spans) too"))
    check(ccall((:stochflow_model_set_param, libstochflow), Cint, (Ptr{Cvoid}, Cint, Cdouble),
                m.ptr, key, v), "stochflow_model_set_param")
    name === :lr_total_steps && (m.horizon_known = true)
    return m
end

function get_param(m::Model, name::Symbol)
    key, _ = paramkey(name, "model")
    out = Ref{Cdouble}(0)
    check(ccall((:stochflow_model_get_param, libstochflow), Cint,
                (Ptr{Cdouble}, Ptr{Cvoid}, Cint), out, m.ptr, key), "stochflow_model_get_param")
    return out[]
end

"""(a(t), b(t), a'(t), b'(t)) of the model's interpolant."""
function interpolant_eval(m::Model, t::Real)
    out = Vector{Cdouble}(undef, 4)
    check(ccall((:stochflow_model_interpolant_eval, libstochflow), Cint,
                (Ptr{Cdouble}, Ptr{Cvoid}, Cdouble), out, m.ptr, t),
          "stochflow_model_interpolant_eval")
    return Tuple(out)
end

"""(alpha, beta): copies of the learned Fourier coefficients."""
function interpolant_coefficients(m::Model)
    n = Ref{Csize_t}(0)
    check(ccall((:stochflow_model_interpolant_coefficients, libstochflow), Cint,
                (Ptr{Cdouble}, Ptr{Cdouble}, Ptr{Csize_t}, Ptr{Cvoid}), C_NULL, C_NULL, n, m.ptr),
          "stochflow_model_interpolant_coefficients")
    alpha = Vector{Cdouble}(undef, n[])
    beta = Vector{Cdouble}(undef, n[])
    check(ccall((:stochflow_model_interpolant_coefficients, libstochflow), Cint,
                (Ptr{Cdouble}, Ptr{Cdouble}, Ptr{Csize_t}, Ptr{Cvoid}), alpha, beta, n, m.ptr),
          "stochflow_model_interpolant_coefficients")
    return alpha, beta
end

"""(running path-length estimate, number of steps averaged)."""
function path_length(m::Model)
    v = Ref{Cdouble}(0)
    c = Ref{UInt64}(0)
    check(ccall((:stochflow_model_path_length, libstochflow), Cint,
                (Ptr{Cdouble}, Ptr{UInt64}, Ptr{Cvoid}), v, c, m.ptr),
          "stochflow_model_path_length")
    return v[], c[]
end

"""Interpolant loss of a d × n batch without an update (x0, t drawn by the library)."""
function loss(m::Model, x1::AbstractMatrix)
    x = points(x1, m.dim, "x1")
    out = Ref{Cdouble}(0)
    check(ccall((:stochflow_model_loss, libstochflow), Cint,
                (Ptr{Cdouble}, Ptr{Cvoid}, Ptr{Cfloat}, Csize_t, Ptr{Cfloat}, Ptr{Cfloat}),
                out, m.ptr, x, size(x, 2), C_NULL, C_NULL), "stochflow_model_loss")
    return out[]
end

"""One Adam step on a d × n batch; returns the loss before the update."""
function train_step!(m::Model, x1::AbstractMatrix)
    x = points(x1, m.dim, "x1")
    out = Ref{Cdouble}(0)
    check(ccall((:stochflow_model_train_step, libstochflow), Cint,
                (Ptr{Cdouble}, Ptr{Cvoid}, Ptr{Cfloat}, Csize_t, Ptr{Cfloat}, Ptr{Cfloat}),
                out, m.ptr, x, size(x, 2), C_NULL, C_NULL), "stochflow_model_train_step")
    return out[]
end

"""
    parameters(m), gradients(m)

The flat parameter / gradient buffers as `Vector{Float32}` sharing the model's memory.
Unlike Python, the vector does not keep `m` alive: keep a reference to `m` (or use
`GC.@preserve m`) while using it.
"""
function parameters(m::Model)
    p = Ref{Ptr{Cfloat}}(C_NULL)
    n = Ref{Csize_t}(0)
    check(ccall((:stochflow_model_parameters, libstochflow), Cint,
                (Ptr{Ptr{Cfloat}}, Ptr{Csize_t}, Ptr{Cvoid}), p, n, m.ptr),
          "stochflow_model_parameters")
    return unsafe_wrap(Vector{Float32}, p[], Int(n[]); own = false)
end

function gradients(m::Model)
    p = Ref{Ptr{Cfloat}}(C_NULL)
    n = Ref{Csize_t}(0)
    check(ccall((:stochflow_model_gradients, libstochflow), Cint,
                (Ptr{Ptr{Cfloat}}, Ptr{Csize_t}, Ptr{Cvoid}), p, n, m.ptr),
          "stochflow_model_gradients")
    return unsafe_wrap(Vector{Float32}, p[], Int(n[]); own = false)
end

"""v(t, x) for a d × n batch; returns d × n."""
function velocity(m::Model, t::Real, x::AbstractMatrix)
    xx = points(x, m.dim)
    v = similar(xx)
    check(ccall((:stochflow_model_velocity, libstochflow), Cint,
                (Ptr{Cfloat}, Ptr{Cvoid}, Cdouble, Ptr{Cfloat}, Csize_t),
                v, m.ptr, t, xx, size(xx, 2)), "stochflow_model_velocity")
    return v
end

"""Exact divergence of v(t, ·) at each column of x (length n)."""
function divergence(m::Model, t::Real, x::AbstractMatrix)
    xx = points(x, m.dim)
    div = Vector{Float32}(undef, size(xx, 2))
    check(ccall((:stochflow_model_divergence, libstochflow), Cint,
                (Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cvoid}, Cdouble, Ptr{Cfloat}, Csize_t),
                div, C_NULL, m.ptr, t, xx, size(xx, 2)), "stochflow_model_divergence")
    return div
end

"""Write a checkpoint atomically."""
function save(m::Model, path::AbstractString)
    check(ccall((:stochflow_model_save, libstochflow), Cint, (Ptr{Cvoid}, Cstring),
                m.ptr, path), "stochflow_model_save")
    return nothing
end

"""Load a checkpoint written by `save` (from any language)."""
function load(path::AbstractString)
    h = Ref{Ptr{Cvoid}}(C_NULL)
    check(ccall((:stochflow_model_load, libstochflow), Cint, (Ptr{Ptr{Cvoid}}, Cstring),
                h, path), "stochflow_model_load")
    return Model(h[])
end

# ---- solver -------------------------------------------------------------------------

"""
    Solver(; solver=:dopri5, seed=0, options...)

Integration settings (steps, rtol, atol, h_init, h_min, max_steps, logp_error, trace,
probes, probe_dist); `seed` keys the Hutchinson probes. Freed by a finalizer.
"""
mutable struct Solver
    ptr::Ptr{Cvoid}
    function Solver(; solver = :dopri5, seed::Integer = 0, options...)
        h = Ref{Ptr{Cvoid}}(C_NULL)
        check(ccall((:stochflow_solver_new, libstochflow), Cint, (Ptr{Ptr{Cvoid}},), h),
              "stochflow_solver_new")
        s = new(h[])
        finalizer(s) do s
            ccall((:stochflow_solver_free, libstochflow), Cvoid, (Ptr{Cvoid},), s.ptr)
            s.ptr = C_NULL
        end
        set_param!(s, :solver, solver)
        for (name, value) in options
            value === nothing || set_param!(s, name, value)
        end
        check(ccall((:stochflow_solver_set_seed, libstochflow), Cint, (Ptr{Cvoid}, UInt64),
                    s.ptr, seed), "stochflow_solver_set_seed")
        return s
    end
end

function set_param!(s::Solver, name::Symbol, value)
    key, values = paramkey(name, "solver")
    v = values === nothing ? value : enumvalue(value, values, String(name))
    check(ccall((:stochflow_solver_set_param, libstochflow), Cint, (Ptr{Cvoid}, Cint, Cdouble),
                s.ptr, key, v), "stochflow_solver_set_param")
    return s
end

function get_param(s::Solver, name::Symbol)
    key, _ = paramkey(name, "solver")
    out = Ref{Cdouble}(0)
    check(ccall((:stochflow_solver_get_param, libstochflow), Cint,
                (Ptr{Cdouble}, Ptr{Cvoid}, Cint), out, s.ptr, key), "stochflow_solver_get_param")
    return out[]
end

"""n samples as a d × n matrix (and log p when return_log_prob); base draws keyed by seed."""
function sample(s::Solver, m::Model, n::Integer; seed::Integer = 0, return_log_prob = false)
    n >= 1 || throw(ArgumentError("n must be positive, got $n"))
    x = Matrix{Float32}(undef, m.dim, n)
    logp = return_log_prob ? Vector{Float32}(undef, n) : nothing
    check(ccall((:stochflow_solver_sample, libstochflow), Cint,
                (Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cvoid}, Ptr{Cvoid}, Csize_t, UInt64),
                x, logp === nothing ? C_NULL : logp, s.ptr, m.ptr, n, seed),
          "stochflow_solver_sample")
    return return_log_prob ? (x, logp) : x
end

"""log rho_t(x) for each column of x (and Hutchinson standard errors with return_se)."""
function log_prob(s::Solver, m::Model, x::AbstractMatrix; t::Real = 1.0, return_se = false)
    xx = points(x, m.dim)
    n = size(xx, 2)
    logp = Vector{Float32}(undef, n)
    se = return_se ? Vector{Float32}(undef, n) : nothing
    check(ccall((:stochflow_solver_log_prob, libstochflow), Cint,
                (Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Csize_t, Cdouble),
                logp, se === nothing ? C_NULL : se, s.ptr, m.ptr, xx, n, t),
          "stochflow_solver_log_prob")
    return return_se ? (logp, se) : logp
end

"""Integrate the columns of x from t0 to t1; returns the end points (and dlogp)."""
function integrate(s::Solver, m::Model, x::AbstractMatrix, t0::Real, t1::Real;
                   return_dlogp = false)
    xx = copy(points(x, m.dim))
    n = size(xx, 2)
    dlogp = return_dlogp ? Vector{Float32}(undef, n) : nothing
    check(ccall((:stochflow_solver_integrate, libstochflow), Cint,
                (Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Csize_t, Cdouble,
                 Cdouble),
                dlogp === nothing ? C_NULL : dlogp, C_NULL, s.ptr, m.ptr, xx, n, t0, t1),
          "stochflow_solver_integrate")
    return return_dlogp ? (xx, dlogp) : xx
end

# Model-level conveniences, as in Python.
sample(m::Model, n::Integer; solver = :dopri5, seed::Integer = 0, return_log_prob = false,
       options...) =
    sample(Solver(; solver = solver, options...), m, n; seed = seed,
           return_log_prob = return_log_prob)

log_prob(m::Model, x::AbstractMatrix; trace = :exact, probes::Integer = 1, return_se = false,
         t::Real = 1.0, seed::Integer = 0, solver = :dopri5, options...) =
    log_prob(Solver(; solver = solver, trace = trace, probes = probes, seed = seed, options...),
             m, x; t = t, return_se = return_se)

integrate(m::Model, x::AbstractMatrix, t0::Real, t1::Real; solver = :dopri5,
          return_dlogp = false, options...) =
    integrate(Solver(; solver = solver, options...), m, x, t0, t1; return_dlogp = return_dlogp)

# ---- utilities ----------------------------------------------------------------------

"""n points (2 × n) of a built-in 2-D toy density."""
function toy_sample(name::AbstractString, n::Integer; seed::Integer = 0, stream::Integer = 0)
    out = Matrix{Float32}(undef, 2, n)
    check(ccall((:stochflow_toy_sample, libstochflow), Cint,
                (Ptr{Cfloat}, Cstring, Csize_t, UInt64, UInt64), out, name, n, seed, stream),
          "stochflow_toy_sample")
    return out
end

function toy_names()
    n = ccall((:stochflow_toy_count, libstochflow), Csize_t, ())
    return [unsafe_string(ccall((:stochflow_toy_name, libstochflow), Ptr{Cchar}, (Csize_t,), i))
            for i in 0:(n - 1)]
end

"""
    coupling_assign(x0, x1; mode=:ot, reg=0.0, seed=0) -> (perm, cost)

Minibatch coupling of the columns of x0 and x1 (d × n each): `perm[i]` is the (1-based)
column of x0 paired with column i of x1.
"""
function coupling_assign(x0::AbstractMatrix, x1::AbstractMatrix; mode = :ot, reg::Real = 0.0,
                         seed::Integer = 0)
    d = size(x1, 1)
    a = points(x0, d, "x0")
    b = points(x1, d, "x1")
    size(a) == size(b) || throw(DimensionMismatch("x0 must have size $(size(b)), got $(size(a))"))
    perm = Vector{Csize_t}(undef, size(b, 2))
    cost = Ref{Cdouble}(0)
    check(ccall((:stochflow_coupling_assign, libstochflow), Cint,
                (Ptr{Csize_t}, Ptr{Cdouble}, Ptr{Cfloat}, Ptr{Cfloat}, Csize_t, Csize_t, Cint,
                 Cdouble, UInt64),
                perm, cost, a, b, size(b, 2), d, enumvalue(mode, COUPLINGS, "coupling"), reg,
                seed), "stochflow_coupling_assign")
    return Int.(perm) .+ 1, cost[]
end

# n counter-based draws of element type T from the C function fn (Float32 normals,
# Float64 uniforms); element i depends only on (seed, stream, i).
function random_draws(fn::Symbol, ::Type{T}, n, seed, stream) where {T}
    out = Vector{T}(undef, n)
    rc = fn === :stochflow_random_normal ?
         ccall((:stochflow_random_normal, libstochflow), Cint,
               (Ptr{Cfloat}, Csize_t, UInt64, UInt64), out, n, seed, stream) :
         ccall((:stochflow_random_uniform, libstochflow), Cint,
               (Ptr{Cdouble}, Csize_t, UInt64, UInt64), out, n, seed, stream)
    check(rc, String(fn))
    return out
end

"""n standard normal draws; element i depends only on (seed, stream, i)."""
random_normal(n::Integer; seed::Integer = 0, stream::Integer = 0) =
    random_draws(:stochflow_random_normal, Float32, n, seed, stream)

"""n uniform draws in [0, 1); element i depends only on (seed, stream, i)."""
random_uniform(n::Integer; seed::Integer = 0, stream::Integer = 0) =
    random_draws(:stochflow_random_uniform, Float64, n, seed, stream)

# ---- U-Net settings of a model ---------------------------------------------------------

"""
    unet_settings(m) -> NamedTuple or nothing

The U-Net settings of a model (as accepted by `Model(dim; unet = ...)`), or `nothing` for
an MLP.
"""
function unet_settings(m::Model)
    cfg = Ref{Ptr{Cvoid}}(C_NULL)
    check(ccall((:stochflow_model_config, libstochflow), Cint, (Ptr{Ptr{Cvoid}}, Ptr{Cvoid}),
                cfg, m.ptr), "stochflow_model_config")
    try
        ccall((:stochflow_config_arch, libstochflow), Cint, (Ptr{Cvoid},), cfg[]) == ARCH_UNET ||
            return nothing
        r = Ref{UnetOptions}()
        check(ccall((:stochflow_config_unet, libstochflow), Cint,
                    (Ptr{UnetOptions}, Ptr{Cvoid}), r, cfg[]), "stochflow_config_unet")
        o = r[]
        return (channels = Int(o.channels), height = Int(o.height), width = Int(o.width),
                base = Int(o.base), mult = Tuple(Int(o.mult[i]) for i in 1:o.n_levels),
                blocks = Int(o.blocks), attn_mask = Int(o.attn_mask), groups = Int(o.groups))
    finally
        ccall((:stochflow_config_free, libstochflow), Cvoid, (Ptr{Cvoid},), cfg[])
    end
end

# ---- image data (doc/images.md) -------------------------------------------------------
#
# The library's pixel order is NCHW, row-major; in Julia's column-major order the same
# memory is an array of size (width, height, channels, count).

"""
    images_load(source; max_count=0) -> Array{UInt8,4}

8-bit images of size (width, height, channels, count) (the C library's NCHW memory order).
`source` is "idx:PATH" (IDX unsigned-byte file, raw or gzip) or "pngdir:PATH" (the
directory's .png files in name order); at most `max_count` images (0 = all). A copy owned
by Julia (the library's buffer is freed at once).
"""
function images_load(source::AbstractString; max_count::Integer = 0)
    ptr = Ref{Ptr{UInt8}}(C_NULL)
    n, c, h, w = (Ref{Csize_t}(0) for _ in 1:4)
    check(ccall((:stochflow_images_load, libstochflow), Cint,
                (Ptr{Ptr{UInt8}}, Ptr{Csize_t}, Ptr{Csize_t}, Ptr{Csize_t}, Ptr{Csize_t},
                 Cstring, Csize_t),
                ptr, n, c, h, w, source, max_count), "stochflow_images_load")
    dims = (Int(w[]), Int(h[]), Int(c[]), Int(n[]))
    try
        return copy(unsafe_wrap(Array, ptr[], dims; own = false))
    finally
        ccall((:stochflow_images_free, libstochflow), Cvoid, (Ptr{UInt8},), ptr[])
    end
end

"""Uniform dequantization into [-1, 1): 2 (p + u) / 256 - 1, u keyed by (seed, stream, index)."""
function images_dequantize(pixels::AbstractArray{UInt8}; seed::Integer = 0, stream::Integer = 0)
    p = pixels isa Array{UInt8} ? pixels : Array{UInt8}(pixels)
    out = similar(p, Float32)
    check(ccall((:stochflow_images_dequantize, libstochflow), Cint,
                (Ptr{Cfloat}, Ptr{UInt8}, Csize_t, UInt64, UInt64), out, p, length(p), seed,
                stream), "stochflow_images_dequantize")
    return out
end

"""Bin centres: 2 (p + 0.5) / 256 - 1."""
function images_to_float(pixels::AbstractArray{UInt8})
    p = pixels isa Array{UInt8} ? pixels : Array{UInt8}(pixels)
    out = similar(p, Float32)
    check(ccall((:stochflow_images_to_float, libstochflow), Cint,
                (Ptr{Cfloat}, Ptr{UInt8}, Csize_t), out, p, length(p)),
          "stochflow_images_to_float")
    return out
end

"""Back to bytes: clamp(floor((x + 1) 128), 0, 255); NaN gives 0."""
function images_quantize(x::AbstractArray{<:Real})
    a = x isa Array{Float32} ? x : Array{Float32}(x)
    out = similar(a, UInt8)
    check(ccall((:stochflow_images_quantize, libstochflow), Cint,
                (Ptr{UInt8}, Ptr{Cfloat}, Csize_t), out, a, length(a)),
          "stochflow_images_quantize")
    return out
end

"""Bits per dimension of a log-density (nats) of data in [-1, 1]^dim: -logp/(dim ln 2) + 7."""
bits_per_dim(logp::Real, dim::Integer) =
    ccall((:stochflow_bits_per_dim, libstochflow), Cdouble, (Cdouble, Csize_t), logp, dim)

"""
    images_write_grid(path, images; ncols=0)

Write float images in [-1, 1] of size (width, height, channels, n) (channels 1 or 3) as one
PNG grid with 2-pixel borders, `ncols` per row (0 = ceil(sqrt n)).
"""
function images_write_grid(path::AbstractString, images::AbstractArray{<:Real,4}; ncols::Integer = 0)
    a = images isa Array{Float32,4} ? images : Array{Float32,4}(images)
    w, h, c, n = size(a)
    check(ccall((:stochflow_images_write_grid, libstochflow), Cint,
                (Cstring, Ptr{Cfloat}, Csize_t, Csize_t, Csize_t, Csize_t, Csize_t),
                path, a, n, c, h, w, ncols), "stochflow_images_write_grid")
    return nothing
end

# ---- conditional models (doc/conditional.md) ----------------------------------------

"""(n_ctx, n_classes) of a conditional model; (0, 0) for an unconditional one."""
function context(m::Model)
    k = Ref{Csize_t}(0)
    c = Ref{Csize_t}(0)
    check(ccall((:stochflow_model_context, libstochflow), Cint,
                (Ptr{Csize_t}, Ptr{Csize_t}, Ptr{Cvoid}), k, c, m.ptr), "stochflow_model_context")
    return Int(k[]), Int(c[])
end

# The context (n_ctx × n, or one column of n_ctx values for every point) and labels (n
# integers, or one for every point; -1 = none) of n points, as C arrays or nothing.
function condargs(m::Model, n::Integer, ctx, labels)
    k, _ = context(m)
    c = nothing
    if ctx !== nothing
        cm = ctx isa AbstractVector ? repeat(reshape(ctx, :, 1), 1, n) : ctx
        c = points(cm, k, "ctx")
        size(c, 2) == n || throw(DimensionMismatch("ctx must have size ($k, $n), got $(size(c))"))
    end
    l = nothing
    if labels !== nothing
        l = labels isa Integer ? fill(Int32(labels), n) : Vector{Int32}(labels)
        length(l) == n || throw(DimensionMismatch("labels must have length $n, got $(length(l))"))
    end
    return c, l
end

"""One Adam step on a d × n batch given its context (n_ctx × n) and/or labels (n)."""
function train_step_ctx!(m::Model, x1::AbstractMatrix; ctx = nothing, labels = nothing)
    x = points(x1, m.dim, "x1")
    c, l = condargs(m, size(x, 2), ctx, labels)
    out = Ref{Cdouble}(0)
    check(ccall((:stochflow_model_train_step_ctx, libstochflow), Cint,
                (Ptr{Cdouble}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Int32}, Csize_t,
                 Ptr{Cfloat}, Ptr{Cfloat}),
                out, m.ptr, x, c === nothing ? C_NULL : c, l === nothing ? C_NULL : l,
                size(x, 2), C_NULL, C_NULL), "stochflow_model_train_step_ctx")
    return out[]
end

"""v(t, x | c) for a d × n batch; returns d × n."""
function velocity_ctx(m::Model, t::Real, x::AbstractMatrix; ctx = nothing, labels = nothing)
    xx = points(x, m.dim)
    c, l = condargs(m, size(xx, 2), ctx, labels)
    v = similar(xx)
    check(ccall((:stochflow_model_velocity_ctx, libstochflow), Cint,
                (Ptr{Cfloat}, Ptr{Cvoid}, Cdouble, Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Int32}, Csize_t),
                v, m.ptr, t, xx, c === nothing ? C_NULL : c, l === nothing ? C_NULL : l,
                size(xx, 2)), "stochflow_model_velocity_ctx")
    return v
end

"""n samples of p(x | c) as d × n (guided by the solver's :guidance)."""
function sample_ctx(s::Solver, m::Model, n::Integer; ctx = nothing, labels = nothing,
                    seed::Integer = 0, return_log_prob = false)
    n >= 1 || throw(ArgumentError("n must be positive, got $n"))
    c, l = condargs(m, n, ctx, labels)
    x = Matrix{Float32}(undef, m.dim, n)
    logp = return_log_prob ? Vector{Float32}(undef, n) : nothing
    check(ccall((:stochflow_solver_sample_ctx, libstochflow), Cint,
                (Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Int32},
                 Csize_t, UInt64),
                x, logp === nothing ? C_NULL : logp, s.ptr, m.ptr, c === nothing ? C_NULL : c,
                l === nothing ? C_NULL : l, n, seed), "stochflow_solver_sample_ctx")
    return return_log_prob ? (x, logp) : x
end

"""log p(x | c) for each column of x (the guided flow's density with :guidance != 0)."""
function log_prob_ctx(s::Solver, m::Model, x::AbstractMatrix; ctx = nothing, labels = nothing,
                      t::Real = 1.0)
    xx = points(x, m.dim)
    n = size(xx, 2)
    c, l = condargs(m, n, ctx, labels)
    logp = Vector{Float32}(undef, n)
    check(ccall((:stochflow_solver_log_prob_ctx, libstochflow), Cint,
                (Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Cfloat},
                 Ptr{Int32}, Csize_t, Cdouble),
                logp, C_NULL, s.ptr, m.ptr, xx, c === nothing ? C_NULL : c,
                l === nothing ? C_NULL : l, n, t), "stochflow_solver_log_prob_ctx")
    return logp

# ---- stochastic interpolants: objectives and SDE sampling (doc/sde.md) -----------------

const OBJECTIVES = Dict(:velocity => 1, :drift => 2, :score => 3, :denoiser => 4)
const GAMMAS = Dict(:zero => 1, :brownian => 2, :brownian_scaled => 3, :quadratic => 4,
                    :sin2 => 5)

"""The objective of a new model: field (:velocity, :drift, :score, :denoiser), gamma
(:zero, :brownian, (:brownian, c), :quadratic, :sin2; nothing = brownian for drift, score
and denoiser, zero for the velocity), antithetic pairs. Two-sided interpolant."""
function set_objective(cfg::Ptr{Cvoid}, objective, gamma, antithetic::Bool)
    field = enumvalue(objective, OBJECTIVES, "objective")
    g, scale = 1, 0.0
    if gamma === nothing
        g = field == 1 ? 1 : 2
    elseif gamma isa Tuple
        g, scale = 3, Float64(gamma[2])
    else
        g = enumvalue(gamma, GAMMAS, "gamma")
    end
    check(ccall((:stochflow_config_set_objective, libstochflow), Cint,
                (Ptr{Cvoid}, Cint, Cint, Cint, Cdouble, Cint), cfg, field, 1, g, scale,
                antithetic ? 1 : 0), "stochflow_config_set_objective")
end

"""(field, gamma) codes a model was trained for."""
function objective(m::Model)
    cfg = Ref{Ptr{Cvoid}}(C_NULL)
    check(ccall((:stochflow_model_config, libstochflow), Cint, (Ptr{Ptr{Cvoid}}, Ptr{Cvoid}),
                cfg, m.ptr), "stochflow_model_config")
    f, g = Ref{Cint}(0), Ref{Cint}(0)
    try
        check(ccall((:stochflow_config_objective, libstochflow), Cint,
                    (Ptr{Cint}, Ptr{Cint}, Ptr{Cint}, Ptr{Cdouble}, Ptr{Cint}, Ptr{Cvoid}),
                    f, C_NULL, g, C_NULL, C_NULL, cfg[]), "stochflow_config_objective")
    finally
        ccall((:stochflow_config_free, libstochflow), Cvoid, (Ptr{Cvoid},), cfg[])
    end
    return Int(f[]), Int(g[])
end

# eps on (h/2, 1 - h/2), 0 on the first and last steps; user = [eps, h]
eps_inside(user::Ptr{Cvoid}, t::Cdouble)::Cdouble =
    (w = unsafe_wrap(Array, Ptr{Cdouble}(user), 2); w[2] / 2 < t < 1 - w[2] / 2 ? w[1] : 0.0)

# An SDE handle for drift (and score) as the CLI's sample --sde sets it up, with the
# window array the eps schedule reads (keep it alive while the handle is used).
function make_sde(drift::Model, score, eps::Real, steps::Integer, method::Symbol,
                  paths::Integer, guidance::Real = 0.0, trace::Symbol = :exact)
    fd, gd = objective(drift)
    fd in (3, 4) && throw(ArgumentError("the drift model was trained for the score"))
    fs = 5  # STOCHFLOW_FIELD_SCORE_FROM_VELOCITY
    if score !== nothing
        fs, _ = objective(score)
        fs in (3, 4) || throw(ArgumentError("score was not trained for the score or denoiser"))
    elseif gd != 1 && eps > 0
        throw(ArgumentError("a model trained with a gamma needs its score model"))
    end
    h = Ref{Ptr{Cvoid}}(C_NULL)
    check(ccall((:stochflow_sde_new, libstochflow), Cint, (Ptr{Ptr{Cvoid}},), h),
          "stochflow_sde_new")
    window = Float64[eps, 1 / steps]
    try
        put(k, v) = check(ccall((:stochflow_sde_set_param, libstochflow), Cint,
                                (Ptr{Cvoid}, Cint, Cdouble), h[], k, v), "stochflow_sde_set_param")
        put(600, method === :em ? 1 : 2)
        put(601, steps)
        put(602, eps)
        put(607, paths)
        put(605, fd == 1 && gd != 1 ? 1 : 2)
        put(606, fs)
        put(609, guidance)                       # STOCHFLOW_PARAM_SDE_GUIDANCE
        put(610, trace === :hutchinson ? 2 : 1)  # STOCHFLOW_PARAM_SDE_TRACE
        if score !== nothing || gd != 1
            si = Ref{Ptr{Cvoid}}(C_NULL)
            check(ccall((:stochflow_model_sinterp, libstochflow), Cint,
                        (Ptr{Ptr{Cvoid}}, Ptr{Cvoid}), si, (score === nothing ? drift : score).ptr),
                  "stochflow_model_sinterp")
            rc = ccall((:stochflow_sde_set_interpolant, libstochflow), Cint,
                       (Ptr{Cvoid}, Ptr{Cvoid}), h[], si[])
            ccall((:stochflow_sinterp_free, libstochflow), Cvoid, (Ptr{Cvoid},), si[])
            check(rc, "stochflow_sde_set_interpolant")
        end
        if eps > 0 && fs != 3
            f = @cfunction(eps_inside, Cdouble, (Ptr{Cvoid}, Cdouble))
            check(ccall((:stochflow_sde_set_eps_schedule, libstochflow), Cint,
                        (Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid}), h[], f, pointer(window)),
                  "stochflow_sde_set_eps_schedule")
        end
    catch
        ccall((:stochflow_sde_free, libstochflow), Cvoid, (Ptr{Cvoid},), h[])
        rethrow()
    end
    return h[], window
end

"""n samples (dim × n) of the SDE dX = [b + eps s] dt + sqrt(2 eps) dW with drift model
`m` and score model `score` (nothing: the score from a gamma-free velocity model);
method :heun or :em; ctx/labels (as sample_ctx) and guidance w of a conditional model.
Returns (x, nfe)."""
function sample_sde(m::Model, n::Integer, eps::Real; score = nothing, steps::Integer = 100,
                    method::Symbol = :heun, seed::Integer = 0, ctx = nothing,
                    labels = nothing, guidance::Real = 0.0)
    n >= 1 || throw(ArgumentError("n must be positive, got $n"))
    c, l = condargs(m, n, ctx, labels)
    h, window = make_sde(m, score, eps, steps, method, 16, guidance)
    x = Matrix{Float32}(undef, m.dim, n)
    nfe = Ref{Cdouble}(0)
    try
        GC.@preserve window check(ccall((:stochflow_sde_sample_ctx, libstochflow), Cint,
                    (Ptr{Cfloat}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Ptr{Int32},
                     Csize_t, UInt64),
                    x, h, m.ptr, score === nothing ? C_NULL : score.ptr,
                    c === nothing ? C_NULL : c, l === nothing ? C_NULL : l, n, seed),
              "stochflow_sde_sample_ctx")
        check(ccall((:stochflow_sde_stat, libstochflow), Cint, (Ptr{Cdouble}, Ptr{Cvoid}, Cint),
                    nfe, h, 1), "stochflow_sde_stat")
    finally
        ccall((:stochflow_sde_free, libstochflow), Cvoid, (Ptr{Cvoid},), h)
    end
    return x, nfe[]
end

"""The SDE likelihood estimate of each column of x: (logp, se over the paths); ctx/labels
and guidance as sample_sde, trace :exact or :hutchinson (one probe per path, for images)."""
function sde_log_prob(m::Model, x::AbstractMatrix, eps::Real; score = nothing,
                      paths::Integer = 16, steps::Integer = 100, seed::Integer = 0,
                      ctx = nothing, labels = nothing, guidance::Real = 0.0,
                      trace::Symbol = :exact)
    xx = points(x, m.dim)
    n = size(xx, 2)
    c, l = condargs(m, n, ctx, labels)
    h, window = make_sde(m, score, eps, steps, :em, paths, guidance, trace)
    logp, se = Vector{Float32}(undef, n), Vector{Float32}(undef, n)
    try
        GC.@preserve window check(ccall((:stochflow_sde_log_prob_ctx, libstochflow), Cint,
                    (Ptr{Cfloat}, Ptr{Cfloat}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat},
                     Ptr{Cfloat}, Ptr{Int32}, Csize_t, UInt64),
                    logp, se, h, m.ptr, score === nothing ? C_NULL : score.ptr, xx,
                    c === nothing ? C_NULL : c, l === nothing ? C_NULL : l, n, seed),
              "stochflow_sde_log_prob_ctx")
    finally
        ccall((:stochflow_sde_free, libstochflow), Cvoid, (Ptr{Cvoid},), h)
    end
    return logp, se
end

# ---- your data: readers, standardization, the C trainer (doc/data.md, doc/training.md) --

# Table of an n × d float32 matrix the library allocated: a d × n Matrix{Float32} (the
# same memory order), copied, the library's buffer freed.
function take_matrix(fn::AbstractString, call)
    ptr = Ref{Ptr{Cfloat}}(C_NULL)
    n, d = Ref{Csize_t}(0), Ref{Csize_t}(0)
    check(call(ptr, n, d), fn)
    try
        return copy(unsafe_wrap(Matrix{Float32}, ptr[], (Int(d[]), Int(n[]))))
    finally
        ccall((:stochflow_data_free, libstochflow), Cvoid, (Ptr{Cfloat},), ptr[])
    end
end

"""A .npy file as a d × n Matrix{Float32} (one row of the file per column), by the
library's strict reader; 0 bounds mean 2^30 bytes and 2^28 values."""
read_npy(path::AbstractString; max_bytes::Integer = 0, max_values::Integer = 0) =
    take_matrix("stochflow_data_read_npy", (p, n, d) ->
        ccall((:stochflow_data_read_npy, libstochflow), Cint,
              (Ptr{Ptr{Cfloat}}, Ptr{Csize_t}, Ptr{Csize_t}, Cstring, Csize_t, Csize_t),
              p, n, d, path, max_bytes, max_values))

"""A .csv file as a d × n Matrix{Float32}, by the library's strict reader."""
read_csv(path::AbstractString; max_bytes::Integer = 0, max_values::Integer = 0) =
    take_matrix("stochflow_data_read_csv", (p, n, d) ->
        ccall((:stochflow_data_read_csv, libstochflow), Cint,
              (Ptr{Ptr{Cfloat}}, Ptr{Csize_t}, Ptr{Csize_t}, Cstring, Csize_t, Csize_t),
              p, n, d, path, max_bytes, max_values))

"""As read_npy, from bytes."""
parse_npy(data::AbstractVector{UInt8}; max_values::Integer = 0) =
    take_matrix("stochflow_data_parse_npy", (p, n, d) ->
        ccall((:stochflow_data_parse_npy, libstochflow), Cint,
              (Ptr{Ptr{Cfloat}}, Ptr{Csize_t}, Ptr{Csize_t}, Ptr{UInt8}, Csize_t, Csize_t),
              p, n, d, Vector{UInt8}(data), length(data), max_values))

"""As read_csv, from bytes or a String."""
parse_csv(data; max_values::Integer = 0) =
    let b = Vector{UInt8}(codeunits(data isa AbstractString ? String(data) : String(copy(data))))
        take_matrix("stochflow_data_parse_csv", (p, n, d) ->
            ccall((:stochflow_data_parse_csv, libstochflow), Cint,
                  (Ptr{Ptr{Cfloat}}, Ptr{Csize_t}, Ptr{Csize_t}, Ptr{UInt8}, Csize_t, Csize_t),
                  p, n, d, b, length(b), max_values))
    end

"""Fit the per-column map z = (x - shift) / scale on the columns (points) of x, before
training; a constant coordinate is an error naming it."""
function fit_standardization!(m::Model, x::AbstractMatrix)
    xx = points(x, m.dim)
    check(ccall((:stochflow_model_fit_standardization, libstochflow), Cint,
                (Ptr{Cvoid}, Ptr{Cfloat}, Csize_t), m.ptr, xx, size(xx, 2)),
          "stochflow_model_fit_standardization")
    return m
end

"""Fit a whitening map z = L⁻¹((x - mean) ./ std), L the Cholesky factor of the
correlation matrix; collinear coordinates are an error naming them."""
function fit_whitening!(m::Model, x::AbstractMatrix)
    xx = points(x, m.dim)
    check(ccall((:stochflow_model_fit_whitening, libstochflow), Cint,
                (Ptr{Cvoid}, Ptr{Cfloat}, Csize_t), m.ptr, xx, size(xx, 2)),
          "stochflow_model_fit_whitening")
    return m
end

"""Set the per-column map (d shifts, d scales > 0), or remove any map with nothing."""
function set_standardization!(m::Model, shift, scale)
    if shift === nothing && scale === nothing
        sh = sc = C_NULL
    else
        sh, sc = Vector{Float64}(shift), Vector{Float64}(scale)
        length(sh) == m.dim && length(sc) == m.dim ||
            throw(DimensionMismatch("shift and scale must have $(m.dim) values each"))
    end
    check(ccall((:stochflow_model_set_standardization, libstochflow), Cint,
                (Ptr{Cvoid}, Ptr{Cdouble}, Ptr{Cdouble}), m.ptr, sh, sc),
          "stochflow_model_set_standardization")
    return m
end

"""Set a whitening map: shift, scale (d values) and the lower-triangular d × d factor L."""
function set_whitening!(m::Model, shift, scale, L::AbstractMatrix)
    d = m.dim
    sh, sc = Vector{Float64}(shift), Vector{Float64}(scale)
    length(sh) == d && length(sc) == d && size(L) == (d, d) ||
        throw(DimensionMismatch("shift and scale need $d values, L size ($d, $d)"))
    rowmajor = Matrix{Float64}(permutedims(L))  # the C side reads L row by row
    check(ccall((:stochflow_model_set_whitening, libstochflow), Cint,
                (Ptr{Cvoid}, Ptr{Cdouble}, Ptr{Cdouble}, Ptr{Cdouble}), m.ptr, sh, sc, rowmajor),
          "stochflow_model_set_whitening")
    return m
end

"""(shift, scale) of the model's map, or nothing when it holds none."""
function standardization(m::Model)
    sh, sc = Vector{Float64}(undef, m.dim), Vector{Float64}(undef, m.dim)
    rc = ccall((:stochflow_model_standardization, libstochflow), Cint,
               (Ptr{Cdouble}, Ptr{Cdouble}, Ptr{Cvoid}), sh, sc, m.ptr)
    check(rc, "stochflow_model_standardization")
    return rc == 1 ? (sh, sc) : nothing
end

"""The whitening factor L (d × d, lower-triangular), or nothing when the model holds none."""
function whitening(m::Model)
    buf = Matrix{Float64}(undef, m.dim, m.dim)
    rc = ccall((:stochflow_model_whitening, libstochflow), Cint, (Ptr{Cdouble}, Ptr{Cvoid}),
               buf, m.ptr)
    check(rc, "stochflow_model_whitening")
    return rc == 1 ? permutedims(buf) : nothing  # row-major in C
end

"""Points mapped into the network's space (whitened when the model holds a whitening
map), or back with inverse = true; d × n in, d × n out."""
function standardize(m::Model, x::AbstractMatrix; inverse::Bool = false)
    xx = points(x, m.dim)
    out = similar(xx)
    check(ccall((:stochflow_model_standardize, libstochflow), Cint,
                (Ptr{Cfloat}, Ptr{Cvoid}, Ptr{Cfloat}, Csize_t, Cint),
                out, m.ptr, xx, size(xx, 2), inverse ? 1 : 0), "stochflow_model_standardize")
    return out
end

"""Fit the context map c' = (c - shift) / scale of a conditional model on its context
(n_ctx × n); every _ctx call then takes contexts in these units."""
function fit_context_standardization!(m::Model, ctx::AbstractMatrix)
    k, _ = context(m)
    c = points(ctx, k, "ctx")
    check(ccall((:stochflow_model_fit_context_standardization, libstochflow), Cint,
                (Ptr{Cvoid}, Ptr{Cfloat}, Csize_t), m.ptr, c, size(c, 2)),
          "stochflow_model_fit_context_standardization")
    return m
end

"""Set the context map (n_ctx shifts and scales), or remove it with nothing."""
function set_context_standardization!(m::Model, shift, scale)
    k, _ = context(m)
    if shift === nothing && scale === nothing
        sh = sc = C_NULL
    else
        sh, sc = Vector{Float64}(shift), Vector{Float64}(scale)
        length(sh) == k && length(sc) == k ||
            throw(DimensionMismatch("shift and scale must have $k values each"))
    end
    check(ccall((:stochflow_model_set_context_standardization, libstochflow), Cint,
                (Ptr{Cvoid}, Ptr{Cdouble}, Ptr{Cdouble}), m.ptr, sh, sc),
          "stochflow_model_set_context_standardization")
    return m
end

"""(shift, scale) of the context map, or nothing."""
function context_standardization(m::Model)
    k, _ = context(m)
    sh, sc = Vector{Float64}(undef, k), Vector{Float64}(undef, k)
    rc = ccall((:stochflow_model_context_standardization, libstochflow), Cint,
               (Ptr{Cdouble}, Ptr{Cdouble}, Ptr{Cvoid}), sh, sc, m.ptr)
    check(rc, "stochflow_model_context_standardization")
    return rc == 1 ? (sh, sc) : nothing
end

const TRAINER_PARAMS = Dict(
    :batch_size => 500, :max_steps => 501, :max_seconds => 502, :eval_every => 503,
    :patience => 504, :val_fraction => 505, :val_subset => 506, :seed => 507,
    :min_delta => 508, :keep_best => 509, :set_horizon => 510, :standardize => 511)
const TRAINER_STATS = Dict(
    :best_nll => 550, :best_step => 551, :final_nll => 552, :final_se => 553, :steps => 554,
    :evals => 555, :stop => 556, :last_loss => 557, :train_rows => 558, :val_rows => 559)
const TRAINER_STOPS = Dict(0 => nothing, 1 => :steps, 2 => :time, 3 => :patience,
                           4 => :cancelled)
# STANDARDIZE: 1 per column, 2 the model's map as it is, 3 whitening
const STANDARDIZE_MODES = Dict(:diag => 1, :none => 2, :whiten => 3)

"""
    Trainer(; solver=:dopri5, params...)

The C trainer (doc/training.md): batch_size, max_steps, max_seconds, eval_every,
patience, val_fraction, val_subset, seed, min_delta, keep_best, set_horizon, standardize
(true or :diag, :whiten, false or :none; default false: the model's map as it is), and
the validation solver's options (steps, rtol, atol, ...; `solver_max_steps` for the
solver's max_steps). `fit!(tr, m, x; x_val, progress)` trains; `stats(tr)` reads the
statistics of the last fit. As Python's stochflow.Trainer.
"""
mutable struct Trainer
    ptr::Ptr{Cvoid}
    solver::Ptr{Cvoid}
    function Trainer(; solver = :dopri5, params...)
        h = Ref{Ptr{Cvoid}}(C_NULL)
        check(ccall((:stochflow_trainer_new, libstochflow), Cint, (Ptr{Ptr{Cvoid}},), h),
              "stochflow_trainer_new")
        s = Ref{Ptr{Cvoid}}(C_NULL)
        check(ccall((:stochflow_trainer_solver, libstochflow), Cint,
                    (Ptr{Ptr{Cvoid}}, Ptr{Cvoid}), s, h[]), "stochflow_trainer_solver")
        tr = new(h[], s[])
        finalizer(tr) do tr
            ccall((:stochflow_trainer_free, libstochflow), Cvoid, (Ptr{Cvoid},), tr.ptr)
            tr.ptr = C_NULL
        end
        set_param!(tr, :solver, solver)
        for (name, value) in params
            value === nothing || set_param!(tr, name, value)
        end
        return tr
    end
end

function trainer_value(name::Symbol, value)
    if name === :standardize
        value isa Bool && return value ? 1 : 2
        haskey(STANDARDIZE_MODES, Symbol(value)) ||
            throw(ArgumentError("standardize = $value: true, false, :diag, :whiten or :none"))
        return STANDARDIZE_MODES[Symbol(value)]
    end
    name in (:keep_best, :set_horizon) && value isa Bool && return value ? 1 : 2
    return value
end

function set_param!(tr::Trainer, name::Symbol, value)
    if haskey(TRAINER_PARAMS, name)
        check(ccall((:stochflow_trainer_set_param, libstochflow), Cint,
                    (Ptr{Cvoid}, Cint, Cdouble), tr.ptr, TRAINER_PARAMS[name],
                    trainer_value(name, value)), "stochflow_trainer_set_param")
        return tr
    end
    sname = name === :solver_max_steps ? :max_steps : name
    key, values = paramkey(sname, "trainer or solver")
    v = values === nothing ? value : enumvalue(value, values, String(sname))
    check(ccall((:stochflow_solver_set_param, libstochflow), Cint, (Ptr{Cvoid}, Cint, Cdouble),
                tr.solver, key, v), "stochflow_solver_set_param")
    return tr
end

function get_param(tr::Trainer, name::Symbol)
    out = Ref{Cdouble}(0)
    if haskey(TRAINER_PARAMS, name)
        check(ccall((:stochflow_trainer_get_param, libstochflow), Cint,
                    (Ptr{Cdouble}, Ptr{Cvoid}, Cint), out, tr.ptr, TRAINER_PARAMS[name]),
              "stochflow_trainer_get_param")
    else
        key, _ = paramkey(name === :solver_max_steps ? :max_steps : name, "trainer or solver")
        check(ccall((:stochflow_solver_get_param, libstochflow), Cint,
                    (Ptr{Cdouble}, Ptr{Cvoid}, Cint), out, tr.solver, key),
              "stochflow_solver_get_param")
    end
    return out[]
end

# The C progress callback: user is the Ref holding (function, exception slot).
function progress_trampoline(user::Ptr{Cvoid}, step::UInt64, loss::Cdouble, val::Cdouble,
                             se::Cdouble)::Cint
    st = unsafe_pointer_to_objref(user)::Base.RefValue{Any}
    try
        return st[][1](Int(step), loss, val, se) === true ? Cint(1) : Cint(0)
    catch err
        st[] = (st[][1], err)
        return Cint(1)
    end
end

"""
    fit!(tr, m, x; x_val=nothing, progress=nothing)

Train m on the points (columns) of x, validating on x_val or on the trainer's
val_fraction; progress(step, loss, val_nll, val_se) after every step may return true to
stop (a :cancelled StochFlowError). Returns tr.
"""
function fit!(tr::Trainer, m::Model, x::AbstractMatrix; x_val = nothing, progress = nothing)
    xx = points(x, m.dim)
    xv = x_val === nothing ? nothing : points(x_val, m.dim, "x_val")
    state = Ref{Any}((progress, nothing))
    cb = progress === nothing ? C_NULL :
         @cfunction(progress_trampoline, Cint, (Ptr{Cvoid}, UInt64, Cdouble, Cdouble, Cdouble))
    GC.@preserve state begin
        check(ccall((:stochflow_trainer_set_progress, libstochflow), Cint,
                    (Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid}), tr.ptr, cb,
                    progress === nothing ? C_NULL : pointer_from_objref(state)),
              "stochflow_trainer_set_progress")
        try
            rc = ccall((:stochflow_trainer_fit, libstochflow), Cint,
                       (Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cfloat}, Csize_t, Ptr{Cfloat}, Csize_t),
                       tr.ptr, m.ptr, xx, size(xx, 2), xv === nothing ? C_NULL : xv,
                       xv === nothing ? 0 : size(xv, 2))
            state[][2] === nothing || throw(state[][2])
            check(rc, "stochflow_trainer_fit")
        finally
            ccall((:stochflow_trainer_set_progress, libstochflow), Cint,
                  (Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid}), tr.ptr, C_NULL, C_NULL)
        end
    end
    return tr
end

"""Statistics of the last fit: best_nll, best_step, final_nll, final_se, steps, evals,
stop (:steps, :time, :patience, :cancelled), last_loss, train_rows, val_rows."""
function stats(tr::Trainer)
    out = Dict{Symbol,Any}()
    v = Ref{Cdouble}(0)
    for (name, key) in TRAINER_STATS
        check(ccall((:stochflow_trainer_stat, libstochflow), Cint,
                    (Ptr{Cdouble}, Ptr{Cvoid}, Cint), v, tr.ptr, key), "stochflow_trainer_stat")
        out[name] = v[]
    end
    out[:stop] = get(TRAINER_STOPS, Int(out[:stop]), Int(out[:stop]))
    for k in (:best_step, :steps, :evals, :train_rows, :val_rows)
        out[k] = Int(out[k])
    end
    return out
end

"""The early-stopping state as bytes (resume with load_state!)."""
function state_bytes(tr::Trainer)
    size = Ref{Csize_t}(0)
    check(ccall((:stochflow_trainer_state_size, libstochflow), Cint,
                (Ptr{Csize_t}, Ptr{Cvoid}), size, tr.ptr), "stochflow_trainer_state_size")
    buf = Vector{UInt8}(undef, size[])
    written = Ref{Csize_t}(0)
    check(ccall((:stochflow_trainer_save_state, libstochflow), Cint,
                (Ptr{Csize_t}, Ptr{Cvoid}, Ptr{UInt8}, Csize_t), written, tr.ptr, buf, size[]),
          "stochflow_trainer_save_state")
    return resize!(buf, written[])
end

"""Install a state from state_bytes; nothing forgets the current one."""
function load_state!(tr::Trainer, data)
    buf = data === nothing ? C_NULL : Vector{UInt8}(data)
    check(ccall((:stochflow_trainer_load_state, libstochflow), Cint,
                (Ptr{Cvoid}, Ptr{UInt8}, Csize_t), tr.ptr, buf,
                data === nothing ? 0 : length(buf)), "stochflow_trainer_load_state")
    return tr
end

end # module
