"""samrepro.models"""
