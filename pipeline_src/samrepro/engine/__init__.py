"""samrepro.engine"""
