"""gateway/storage"""
