"""RL-KD: a learned policy picks, per training instance, the teachers a student
learns from. `pieces`: the policy, features, rewards, REINFORCE and the steps
(pure); `pipeline`: teachers, stages, the policy record."""
