import stochflow as sf

m = sf.Model(2, hidden=(64, 64), seed=0, lr=2e-3)
for step in range(2000):
    loss = m.train_step(sf.toy_sample("moons", 256, seed=1, stream=step))
x, logp = m.sample(1000, solver="rk4", steps=50, return_log_prob=True)
data = sf.toy_sample("moons", 500, seed=2)
print("loss %.3f  mean log p(data) %.3f" % (loss, m.log_prob(data).mean()))
m.save("moons.sfm")
m2 = sf.Model.load("moons.sfm")
