"""samrepro.report"""
