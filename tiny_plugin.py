
from stabgap.methods import Method, register

register(Method("sgd_half", "plain SGD at half the usual learning rate", lr=0.005, label="SGD/2", colour="purple"))
