"""samrepro.losses"""
