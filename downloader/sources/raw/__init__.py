"""sources/raw"""
