# Never run: no Julia on the development machines (see ../README.md).
# Usage: STOCHFLOW_LIBRARY=/path/to/libstochflow.so.1 julia --project=.. runtests.jl
using Test
using StochFlow

@testset "StochFlow" begin
    @test StochFlow.version() isa String
    m = Model(2; hidden = (16, 16), seed = 3, threads = 1, lr = 1e-2)
    x = toy_sample("moons", 32; seed = 1)
    @test size(x) == (2, 32)
    @test isfinite(train_step!(m, x))
    @test StochFlow.step(m) == 1
    @test size(velocity(m, 0.5, x)) == (2, 32)
    @test_throws DimensionMismatch velocity(m, 0.5, zeros(Float32, 3, 4))
    e = try
        set_param!(m, :lr, -1.0); nothing
    catch err
        err
    end
    @test e isa StochFlowError && e.status == -1 && e.kind == :invalid
    @test param_key(:lr) == 100 && param_name(100) == "lr"
    @test all(param_key(n) isa Int for n in param_names())
    @test_throws StochFlowError param_key(:learning_rate)
    @test_throws ArgumentError Model(2; hidden = (4,), lr_schedule = :cosine)
    @test get_param(Model(2; hidden = (4,), lr_schedule = :cosine, lr_total_steps = 300),
                    :lr_total_steps) == 300
    bad = copy(x); bad[2, 4] = NaN
    e = try train_step!(m, bad); nothing catch err; err end
    @test e isa StochFlowError && e.kind == :nonfinite && occursin("row 4, column 2", e.message)
    s = sample(m, 8; solver = :rk4, steps = 8)
    @test size(s) == (2, 8)
    @test length(log_prob(m, s; solver = :rk4, steps = 8)) == 8
    p = parameters(m)
    @test length(p) == StochFlow.num_params(m)
    path = tempname()
    save(m, path)
    m2 = StochFlow.load(path)
    @test parameters(m2) == p
end

@testset "images" begin
    p = UInt8.(reshape(0:255, 16, 16))
    c = images_to_float(p)
    @test images_quantize(c) == p
    d = images_dequantize(repeat(p, 1, 4); seed = 1, stream = 2)
    @test all(-1 .<= d .< 1) && images_quantize(d) == repeat(p, 1, 4)
    @test bits_per_dim(-784 * log(2), 784) ≈ 8.0 atol = 1e-12
    dir = mktempdir()
    imgs = images_to_float(UInt8.(reshape((0:59) .* 3, 4, 3, 1, 5)))
    images_write_grid(joinpath(dir, "g.png"), imgs)
    g = images_load("pngdir:" * dir)
    @test size(g) == (3 * 6 + 2, 2 * 5 + 2, 1, 1)
    @test g[1, 1, 1, 1] == 128
    m = Model(64; unet = (channels = 1, height = 8, width = 8, base = 8, mult = (1, 2), groups = 4))
    @test unet_settings(m) == (channels = 1, height = 8, width = 8, base = 8, mult = (1, 2),
                               blocks = 1, attn_mask = 2, groups = 4)
    # stochastic interpolants: a drift and a score model, SDE samples and likelihood
    xs = toy_sample("8gaussians", 128; seed = 2)
    d = Model(2; hidden = (16, 16), seed = 3, threads = 1, objective = :drift)
    sc = Model(2; hidden = (16, 16), seed = 3, threads = 1, objective = :score, antithetic = true)
    for _ in 1:20
        train_step!(d, xs); train_step!(sc, xs)
    end
    xsde, nfe = sample_sde(d, 50, 0.5; score = sc, steps = 10)
    @test size(xsde) == (2, 50) && all(isfinite, xsde) && nfe == 20
    lp, se = sde_log_prob(d, xsde[:, 1:10], 0.5; score = sc, paths = 4, steps = 10)
    @test all(isfinite, lp) && all(se .> 0)
    @test_throws ArgumentError sample_sde(d, 5, 0.5)
end

@testset "conditional models" begin
    m = Model(2; hidden = (16, 16), n_ctx = 3, n_classes = 4, seed = 1, ctx_dropout = 0.2)
    @test context(m) == (3, 4)
    x = toy_sample("moons", 8; stream = 1)
    c = Float32.(reshape(0:23, 3, 8)) ./ 10
    l = Int32[0, 1, 2, 3, -1, 0, 1, 2]
    @test isfinite(train_step_ctx!(m, x; ctx = c, labels = l))
    @test velocity_ctx(m, 0.5, x; ctx = c, labels = l) != velocity_ctx(m, 0.5, x)
    @test velocity_ctx(m, 0.5, x) == velocity(m, 0.5, x)
    s = Solver(; guidance = 1.0)
    xs = sample_ctx(s, m, 8; ctx = c[:, 1], labels = 2, seed = 7)
    @test all(isfinite, log_prob_ctx(s, m, xs; ctx = c[:, 1], labels = 2))
    @test_throws StochFlowError velocity_ctx(m, 0.5, x; labels = fill(Int32(4), 8))
end

# The fit surface over the C trainer, as bindings/python/tests/test_training.py,
# test_estimator.py and bindings/rust/stochflow/tests/trainer.rs check it.
@testset "fit and standardization" begin
    base = toy_sample("moons", 200; seed = 1)
    x = vcat(100 .* base[1:1, :] .+ 7, 100 .* base[1:1, :] .+ 20 .* base[2:2, :])
    m = Model(2; hidden = (16, 16), seed = 2, threads = 1, lr = 3e-3)
    tr = Trainer(; solver = :rk4, steps = 4, batch_size = 32, max_steps = 5,
                 standardize = :whiten, val_fraction = 0.25, eval_every = 1)
    calls = Ref(0)
    fit!(tr, m, x; progress = (step, loss, val, se) -> (calls[] += 1; false))
    st = stats(tr)
    @test st[:steps] == 5 && calls[] == 5 && st[:stop] == :steps && st[:val_rows] == 50
    L = whitening(m)
    @test L !== nothing && L[1, 2] == 0 && L[2, 1] > 0.5
    shift, scale = standardization(m)
    u = (x[:, 1] .- shift) ./ scale
    @test isapprox(standardize(m, x[:, 1:1])[:, 1], L \ u; atol = 1e-5)
    @test isapprox(standardize(m, standardize(m, x[:, 1:3]); inverse = true), x[:, 1:3];
                   rtol = 1e-5)
    # collinear coordinates: an error naming them, the model untouched
    dup = vcat(base[1:1, :], 2 .* base[1:1, :])
    m2 = Model(2; hidden = (16,), seed = 2)
    e = try fit!(Trainer(; standardize = :whiten, max_steps = 2), m2, dup); nothing catch err; err end
    @test e isa StochFlowError && e.kind == :invalid && occursin("column 2", e.message)
    @test standardization(m2) === nothing
    @test_throws ArgumentError Trainer(; standardize = :zca)
    # the context map of a conditional model: the same field as the mapped context
    a = Model(2; hidden = (16,), seed = 4, n_ctx = 1)
    b = Model(2; hidden = (16,), seed = 4, n_ctx = 1)
    c = reshape(Float32[300 + 5 * (i % 17) for i in 1:200], 1, :)
    fit_context_standardization!(a, c)
    sh, sc = context_standardization(a)
    cz = Float32.((c .- sh[1]) ./ sc[1])
    @test velocity_ctx(a, 0.3, base; ctx = c) == velocity_ctx(b, 0.3, base; ctx = cz)
    # readers: d × n, one row of the file per column
    t = parse_csv("a,b\n1,2\n3,4\n")
    @test t == Float32[1 3; 2 4]
    @test state_bytes(tr) isa Vector{UInt8}
end

