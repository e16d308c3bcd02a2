"""gateway/mqtt"""
