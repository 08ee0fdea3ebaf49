"""Relation-based knowledge: relations between samples and between layers."""
