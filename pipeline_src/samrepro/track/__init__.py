"""samrepro.track"""
