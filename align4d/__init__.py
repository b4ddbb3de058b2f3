"""align4d"""
