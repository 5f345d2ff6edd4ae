"""samrepro.optim"""
