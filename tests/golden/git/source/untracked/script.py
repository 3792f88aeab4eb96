
import labtrack
run = labtrack.init("golden git", name="fixed", seed=2)
run.log({"loss": 0.5}, step=0)
run.finish()
