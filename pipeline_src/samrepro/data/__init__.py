"""samrepro.data"""
