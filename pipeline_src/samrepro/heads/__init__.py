"""samrepro.heads"""
