# Never run: no Julia on the development machines (see ../README.md).
# Usage: STOCHFLOW_LIBRARY=/path/to/libstochflow.so.0 julia --project=.. runtests.jl
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
